"""How long a remote service asked us to wait, read from its HTTP response headers.

OpenAI and Google Sheets both answer a rate limit (HTTP 429) or an overload (5xx) with a delay in
``Retry-After`` (delta-seconds or an HTTP date); OpenAI also sends ``retry-after-ms``. Both adapters
hand that delay to the task layer as :attr:`cars_bot.errors.TransientError.retry_after`, so it is
parsed here, once. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["retry_after_seconds"]


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None when absent.

    Header names are matched in any case, so a plain dict works as well as the case-insensitive
    header maps of requests and httpx. ``retry-after-ms`` wins when both are present. A value that
    cannot be read (or is not finite) counts as absent, a date in the past as 0. `now` (aware) is
    for tests; the current time otherwise.
    """
    if not headers:
        return None
    lowered = {str(name).lower(): value for name, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        seconds = _number(lowered.get(name))
        if seconds is not None:
            return max(0.0, seconds / divisor)
    raw = (lowered.get("retry-after") or "").strip()
    if not raw:
        return None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _number(raw: str | None) -> float | None:
    """A finite number from a header value, else None ("inf" and "nan" are not delays)."""
    try:
        value = float((raw or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
