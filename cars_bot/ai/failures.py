"""Why the OpenAI backend could not answer, typed so that the pipeline can apply one policy.

The policy (see :mod:`cars_bot.ai.pipeline`): a transient failure (rate limit, 5xx, timeout) is
retried through Celery while the wait it asks for is reasonable; the rules backend answers only after
that, or at once when waiting cannot help (the account is out of credit, the server said not to retry,
the configured model is rejected). Every fallback is recorded, with its :class:`FallbackReason`, so that
``post show``, ``status`` and ``doctor`` can say so.
"""

from __future__ import annotations

from enum import StrEnum

from cars_bot.errors import PermanentError, TransientError

__all__ = ["FallbackReason", "ModelRejected", "OpenAIUnavailable"]


class FallbackReason(StrEnum):
    """Why the rules backend analysed a post instead of OpenAI (stored in ``ai_usage.model``)."""

    QUOTA_EXHAUSTED = "quota_exhausted"      # HTTP 429 insufficient_quota: the account is out of credit
    MODEL_REJECTED = "model_rejected"        # OPENAI_MODEL is unknown or rejects a parameter
    NOT_RETRYABLE = "not_retryable"          # the server said x-should-retry: false
    UNAVAILABLE = "unavailable"              # still failing after the retries, or the wait asked is too long

    @property
    def text(self) -> str:
        """One line for people."""
        return {
            FallbackReason.QUOTA_EXHAUSTED: "OpenAI quota exhausted (insufficient_quota)",
            FallbackReason.MODEL_REJECTED: "OpenAI rejected the configured model",
            FallbackReason.NOT_RETRYABLE: "OpenAI said not to retry",
            FallbackReason.UNAVAILABLE: "OpenAI unavailable after the retries",
        }[self]


class OpenAIUnavailable(TransientError):
    """OpenAI did not answer; `retryable` is False when waiting cannot help (quota, x-should-retry: false)."""

    def __init__(self, message: str, *, reason: FallbackReason = FallbackReason.UNAVAILABLE,
                 retry_after: float | None = None, retryable: bool = True) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        self.retryable = retryable


class ModelRejected(PermanentError):
    """The configured model does not exist for this key, or rejects a parameter of the request."""

    reason = FallbackReason.MODEL_REJECTED
