"""Error types shared by the domain code and the task layer.

The task base class retries :class:`TransientError` (with the delay the remote side asked for, when
it gave one) and records :class:`PermanentError` in the failed-task registry without retrying.
"""

from __future__ import annotations


class CarsBotError(Exception):
    """Base class of every error this package raises on purpose."""


class TransientError(CarsBotError):
    """A failure that may go away: connection lost, timeout, rate limit (429, FloodWait)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(CarsBotError):
    """A failure that retrying cannot fix: bad input, refusal, invalid response, forbidden."""


class NotConfigured(PermanentError):
    """An integration (OpenAI, Telegram, Google) has no credentials configured."""
