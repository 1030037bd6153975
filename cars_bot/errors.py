"""Error types shared by the domain code and the task layer.

The task base class retries :class:`TransientError` (with the delay the remote side asked for, when
it gave one) and records :class:`PermanentError` in the failed-task registry without retrying.
"""

from __future__ import annotations


class CarsBotError(Exception):
    """Base class of every error this package raises on purpose.

    Its message often quotes a remote service's answer (which may quote a key) and is stored (a post's
    status reason, the failed-task registry, the result backend): URL passwords and configured secrets
    in it are masked when it is made.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*_masked(args))


def _masked(args: tuple[object, ...]) -> tuple[object, ...]:
    if not any(isinstance(a, str) for a in args):
        return args
    from cars_bot.secret_masking import mask_secrets_in

    try:
        from cars_bot.config import get_settings

        settings = get_settings()
    except Exception:  # noqa: BLE001 - an error must always be constructible; URL masking still applies
        settings = None
    return tuple(mask_secrets_in(a, settings) if isinstance(a, str) else a for a in args)


class TransientError(CarsBotError):
    """A failure that may go away: connection lost, timeout, rate limit (429, FloodWait)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(CarsBotError):
    """A failure that retrying cannot fix: bad input, refusal, invalid response, forbidden."""


class NotConfigured(PermanentError):
    """An integration (OpenAI, Telegram, Google) has no credentials configured."""
