"""The admin sheet's cells read and written as typed values: channel links, flags, dates, plan types, counts.

People type these cells, so the parsers accept the forms people use (``@Name`` or a t.me link,
TRUE/ИСТИНА/да, ``dd.mm.YYYY`` or serial dates, FREE/месячная) and raise ValueError naming the
value they cannot read; the sync modules turn that into a reported problem for the row. Every
moment is aware UTC, to the second. The database models are imported only for
:class:`~cars_bot.db.models.SubscriptionType`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from cars_bot.db.models import SubscriptionType
from cars_bot.sheets.workbook import DATE_FORMAT, DATETIME_FORMAT, SERIAL_EPOCH

logger = logging.getLogger("cars_bot.sheets")

#: At most this many problem descriptions are returned by a sync (the counts are always complete).
MAX_PROBLEMS = 20

_TG_HOST = r"(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/"
_INVITE_LINK = re.compile(_TG_HOST + r"(?:\+|joinchat/)[\w-]+/?$", re.IGNORECASE)
_CHANNEL_LINK = re.compile(_TG_HOST + r"(?:s/)?([^/?#\s]+)", re.IGNORECASE)
_USERNAME = re.compile(r"^[a-z][a-z0-9_]{3,31}$")
_INTEGER = re.compile(r"^\+?(\d+)(?:[.,]0+)?$")
_DATETIME_FORMATS = (DATETIME_FORMAT, "%Y-%m-%d %H:%M", DATE_FORMAT,
                     "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
_TRUE = frozenset({"true", "1", "yes", "y", "да", "истина", "on", "✓", "✔", "v"})
_FALSE = frozenset({"false", "0", "no", "n", "нет", "ложь", "off", "✗", "-"})
_TYPES = {
    "free": SubscriptionType.FREE, "бесплатная": SubscriptionType.FREE,
    "monthly": SubscriptionType.MONTHLY, "месячная": SubscriptionType.MONTHLY, "месяц": SubscriptionType.MONTHLY,
    "yearly": SubscriptionType.YEARLY, "годовая": SubscriptionType.YEARLY, "год": SubscriptionType.YEARLY,
}


def is_invite_link(value: str) -> bool:
    """True for a private-channel invite link (t.me/+hash or t.me/joinchat/hash)."""
    return bool(_INVITE_LINK.match(value.strip()))


def normalize_channel_username(raw: str) -> str | None:
    """The database form of a channel cell: a lowercase username without "@", or an invite link as typed.

    Returns None for a blank cell (or a bare "@"); raises ValueError for text that is not a channel.
    """
    text = raw.strip()
    if text in ("", "@"):
        return None
    if is_invite_link(text.lstrip("@")):  # "@https://t.me/+hash" is what the prior system stored
        return text.lstrip("@").rstrip("/")
    match = _CHANNEL_LINK.match(text)
    name = match.group(1) if match else text
    name = name.lstrip("@").lower()
    if not _USERNAME.match(name):
        raise ValueError(f"{raw.strip()!r} is not a channel username or t.me link")
    return name


def normalize_seller_username(raw: str) -> str | None:
    """A seller's Telegram username without "@" or t.me prefix (case kept); None when blank."""
    text = raw.strip()
    match = _CHANNEL_LINK.match(text)
    if match:
        text = match.group(1)
    text = text.lstrip("@").strip()
    return text[:255] or None


def parse_bool(text: str) -> bool | None:
    """A sheet flag: TRUE/FALSE in any case (also ИСТИНА/ЛОЖЬ, да/нет, 1/0); None when blank."""
    value = text.strip().casefold()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text.strip()!r} is not TRUE or FALSE")


def parse_sheet_datetime(text: str) -> datetime | None:
    """A sheet date as aware UTC, to the second; None when blank; ValueError when unreadable.

    Accepts "YYYY-mm-dd HH:MM:SS", "YYYY-mm-dd HH:MM", "YYYY-mm-dd", the same with "dd.mm.YYYY",
    ISO 8601 (an explicit offset is converted to UTC) and spreadsheet serial numbers.
    """
    value = text.strip()
    if not value:
        return None
    try:
        serial = float(value.replace(",", "."))
    except ValueError:
        pass
    else:
        if 0 < serial < 2958466:
            moment = SERIAL_EPOCH + timedelta(seconds=round(serial * 86400))
            return moment.replace(tzinfo=UTC)
        raise ValueError(f"{value!r} is not a date")
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (use YYYY-mm-dd or YYYY-mm-dd HH:MM:SS)") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=0)


def format_sheet_datetime(moment: datetime | None) -> str:
    """A UTC moment as the sheet shows it ("YYYY-mm-dd HH:MM:SS"); "" for None."""
    if moment is None:
        return ""
    return to_utc(moment).strftime(DATETIME_FORMAT)


def parse_subscription_type(text: str) -> SubscriptionType | None:
    """FREE / MONTHLY / YEARLY in any case (or their Russian names); None when blank."""
    value = text.strip().casefold()
    if not value:
        return None
    try:
        return _TYPES[value]
    except KeyError:
        raise ValueError(f"{text.strip()!r} is not FREE, MONTHLY or YEARLY") from None


def parse_count(text: str) -> int | None:
    """A whole non-negative number from a cell ("12", "12.0", "1 234"); None when blank or not a number."""
    match = _INTEGER.match(re.sub(r"[\s\u00a0\u202f]", "", text))
    return int(match.group(1)) if match else None


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC to the second (the sheet's precision); ValueError for a naive datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the sheets sync works in aware UTC only")
    return moment.astimezone(UTC).replace(microsecond=0)


def note_problem(problems: list[str], message: str) -> None:
    """Log a row the sync could not use, and keep its description while fewer than MAX_PROBLEMS are kept."""
    logger.warning("sheets sync: %s", message)
    if len(problems) < MAX_PROBLEMS:
        problems.append(message)
