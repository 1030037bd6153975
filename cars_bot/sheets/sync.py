"""Sheets <-> database synchronisation: channels, subscribers and daily analytics.

Plain functions over a SQLAlchemy session and a :class:`~cars_bot.sheets.workbook.Workbook`; the
Celery tasks in :mod:`cars_bot.tasks.sheets_tasks` only wrap them. Every time is timezone-aware UTC,
and dates in the sheet are UTC. Each function reads a worksheet once, changes the database, COMMITS
the session, and only then writes the sheet (one batch of updates, then at most one append): a failed
sheet write is simply redone by the next run, and never loses a change already applied to the
database. No function calls Telegram.

Channels ("Каналы для мониторинга") -- the SHEET owns the channel list
    * Column B is the key, normalised: "@Name", "https://t.me/Name", "t.me/s/Name/123" -> "name".
      Invite links ("https://t.me/+hash", ".../joinchat/hash") are kept exactly as typed and are never
      prefixed with "@". A row whose B is not a channel is reported and skipped; the first of two rows
      naming the same channel wins.
    * Title (C), seller phone (D), seller username (E) and the active flag (F; blank = active) are
      copied to the database. A blank title keeps the database title (titles are never fetched from
      Telegram); blank D/E clear the contact.
    * A channel whose row was removed from the sheet is DEACTIVATED (never deleted); it comes back
      when its row does. A sheet without a "Username канала" header is an error, not an empty list.
    * Written back: "Дата добавления" (and the title, when C is blank and the database knows one) for
      rows where that cell is blank -- so a second run writes nothing.

Subscribers ("Подписчики") -- ONE source of truth with explicit conflict rules
    1. Rows are matched to users by the Telegram user id in column A only (first row wins, later
       duplicates are reported and left alone). Rows of unknown ids are left alone until the user
       starts the bot.
    2. The DATABASE owns activity and expiry. Every run writes the database's state into D-G:
       type, active flag (active = is_active and the end date is still ahead), start and end dates.
       The daily expiry therefore reaches the sheet. A user with no active subscription shows their
       latest subscription with "FALSE" (or FREE/FALSE without dates if they never had one); a
       sheet type of FREE is accepted as a description of any inactive state and is not overwritten.
    3. The ADMIN may edit D-G. An edit is recognised with the fingerprint column J
       ("Синхронизировано"): after each sync J holds a hash of D-G as they then stood (values
       normalised: type case-insensitive, dates parsed, so a locale re-rendering is not an edit). When
       D-G no longer match J, the admin changed them, and the edit is applied to the database BEFORE
       the database state is written back; otherwise the sheet's D-G are ignored. A row without J and
       with D-G filled in (typed by an admin, or left by the prior system) counts as an edit.
    4. Applying an edit: FREE (any case) or active FALSE ends the current subscription. MONTHLY or
       YEARLY (any case) grants or updates the single current subscription. A blank start keeps the
       current start (or is now for a new grant); a blank end keeps the current end (or is start + 30
       / 365 days). Blank dates are filled once and written back, so they never slide forward. An end
       date in the past stores the subscription as expired (the admin cannot resurrect an expired
       period without a future end date). An edit that cannot be parsed is reported and the row is
       left untouched.
    5. At most one active subscription per user: extra active ones (all but the latest ending) are
       deactivated on every run.
    6. Columns B, C, H, I (username, name, registration date, contact requests) belong to the bot
       and are overwritten when they differ. Users without a row get one appended (idempotent: the
       append skips ids already present in column A at the time of writing).

Analytics ("Аналитика") -- one row per UTC day, updated in place (appended when missing). Revenue is
always 0: this system takes no payments.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel, ContactRequest, Post, Subscription, SubscriptionType, User, utcnow
from cars_bot.errors import PermanentError
from cars_bot.sheets.workbook import (
    AN_ACTIVE_SUBS,
    AN_CONTACTS,
    AN_DATE,
    AN_NEW_USERS,
    AN_PROCESSED,
    AN_PUBLISHED,
    AN_REVENUE,
    ANALYTICS,
    CH_ACTIVE,
    CH_ADDED,
    CH_PHONE,
    CH_SELLER,
    CH_TITLE,
    CH_USERNAME,
    CHANNELS,
    DATE_FORMAT,
    DATETIME_FORMAT,
    SERIAL_EPOCH,
    SUB_ACTIVE,
    SUB_CONTACTS,
    SUB_END,
    SUB_NAME,
    SUB_REGISTERED,
    SUB_START,
    SUB_SYNCED,
    SUB_TYPE,
    SUB_USER_ID,
    SUB_USERNAME,
    SUBSCRIBERS,
    CellValue,
    Row,
    Workbook,
)

logger = logging.getLogger("cars_bot.sheets")

#: Length of a subscription granted in the sheet without an end date.
PLAN_LENGTH: dict[SubscriptionType, timedelta] = {
    SubscriptionType.MONTHLY: timedelta(days=30),
    SubscriptionType.YEARLY: timedelta(days=365),
}
#: Version prefix of the fingerprint in column J (change it if the fingerprint's recipe changes).
STAMP_PREFIX = "v1:"
#: At most this many problem descriptions are returned (the counts are always complete).
MAX_PROBLEMS = 20

# parsing ------------------------------------------------------------------------------------------
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
    return _to_utc(moment).strftime(DATETIME_FORMAT)


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


def _to_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the sheets sync works in aware UTC only")
    return moment.astimezone(UTC).replace(microsecond=0)


def _problem(problems: list[str], message: str) -> None:
    logger.warning("sheets sync: %s", message)
    if len(problems) < MAX_PROBLEMS:
        problems.append(message)


# channels -----------------------------------------------------------------------------------------
def sync_channels(session: Session, workbook: Workbook, now: datetime | None = None) -> dict[str, Any]:
    """Make the database's channels match the sheet "Каналы для мониторинга" (see the module docstring).

    Returns counts: added, updated, deactivated, total (channels listed in the sheet), skipped
    (blank rows), invalid, duplicates, cells_written, and up to 20 problem descriptions.
    """
    now = _to_utc(now or utcnow())
    workbook.ensure_sheet(CHANNELS)
    rows = workbook.read(CHANNELS)
    problems: list[str] = []
    counts = {"added": 0, "updated": 0, "deactivated": 0, "total": 0, "skipped": 0, "invalid": 0,
              "duplicates": 0}

    listed: dict[str, tuple[Row, bool]] = {}
    for row in rows:
        try:
            username = normalize_channel_username(row.cell(CH_USERNAME))
            active = parse_bool(row.cell(CH_ACTIVE))
        except ValueError as exc:
            counts["invalid"] += 1
            _problem(problems, f"{CHANNELS} row {row.number}: {exc}")
            continue
        if username is None:
            counts["skipped"] += 1
            continue
        if username in listed:
            counts["duplicates"] += 1
            _problem(problems, f"{CHANNELS} row {row.number}: {username} is already listed in row "
                               f"{listed[username][0].number}; this row is ignored")
            continue
        listed[username] = (row, True if active is None else active)
    counts["total"] = len(listed)
    if rows and counts["skipped"] == len(rows):
        # Rows exist but none names a channel: column B was most likely renamed or moved. Deactivating
        # every channel on that evidence would stop the whole monitor, so refuse instead.
        raise PermanentError(f"worksheet {CHANNELS!r}: none of its {len(rows)} rows has a {CH_USERNAME!r} "
                             "value; check that the header of that column is spelled exactly so")

    existing: dict[str, Channel] = {}
    for channel in session.scalars(select(Channel).order_by(Channel.id)):
        try:
            key = normalize_channel_username(channel.username) or channel.username
        except ValueError:
            key = channel.username
        existing.setdefault(key, channel)

    write_back: list[tuple[Row, Channel]] = []
    for username, (row, active) in listed.items():
        title = row.cell(CH_TITLE)[:255] or None
        phone = row.cell(CH_PHONE)[:32] or None
        seller = normalize_seller_username(row.cell(CH_SELLER))
        channel = existing.pop(username, None)
        if channel is None:
            channel = Channel(username=username, title=title, is_active=active, seller_phone=phone,
                              seller_username=seller, created_at=now, updated_at=now)
            session.add(channel)
            counts["added"] += 1
        else:
            wanted: dict[str, Any] = {"username": username, "is_active": active, "seller_phone": phone,
                                      "seller_username": seller}
            if title:
                wanted["title"] = title
            changed = False
            for attr, value in wanted.items():
                if getattr(channel, attr) != value:
                    setattr(channel, attr, value)
                    changed = True
            counts["updated"] += changed
        write_back.append((row, channel))

    for channel in existing.values():  # rows removed from the sheet
        if channel.is_active:
            channel.is_active = False
            counts["deactivated"] += 1

    session.flush()
    session.commit()

    for row, channel in write_back:
        cells: dict[str, CellValue] = {}
        if not row.cell(CH_ADDED):
            cells[CH_ADDED] = format_sheet_datetime(channel.created_at or now)
        if not row.cell(CH_TITLE) and channel.title:
            cells[CH_TITLE] = channel.title
        if cells:
            workbook.update(CHANNELS, row.number, cells)
    counts["cells_written"] = workbook.flush()
    return {**counts, "problems": problems, "synced_at": now.isoformat()}


# subscribers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubscriptionState:
    """What columns D-G say (or should say): type, active flag, start, end (None = blank)."""

    type: SubscriptionType | None
    active: bool | None
    start: datetime | None
    end: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> SubscriptionState:
        """Parse D-G of a subscriber row; ValueError names the column that cannot be read."""
        parsed: dict[str, Any] = {}
        for attr, header, parse in (("type", SUB_TYPE, parse_subscription_type), ("active", SUB_ACTIVE, parse_bool),
                                    ("start", SUB_START, parse_sheet_datetime), ("end", SUB_END, parse_sheet_datetime)):
            try:
                parsed[attr] = parse(row.cell(header))
            except ValueError as exc:
                raise ValueError(f"{header}: {exc}") from None
        return cls(**parsed)

    @property
    def blank(self) -> bool:
        """True when D-G are all empty."""
        return self.type is None and self.active is None and self.start is None and self.end is None

    def fingerprint(self) -> str:
        """A short hash of the normalised state, stored in column J after each sync."""
        canonical = "|".join((
            self.type.value if self.type else "",
            "" if self.active is None else str(int(self.active)),
            format_sheet_datetime(self.start),
            format_sheet_datetime(self.end),
        ))
        # The prefix keeps the cell text: a bare hex string such as "12e45" would become a number.
        return STAMP_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def subscription_state(subscriptions: Iterable[Subscription], now: datetime) -> SubscriptionState:
    """The state the sheet should show for a user's subscriptions (rule 2 of the module docstring)."""
    subs = list(subscriptions)
    if not subs:
        return SubscriptionState(SubscriptionType.FREE, False, None, None)
    active = [s for s in subs if s.is_active]
    chosen = max(active or subs, key=lambda s: (s.ends_at, s.id or 0))
    return SubscriptionState(
        type=chosen.type,
        active=bool(chosen.is_active and chosen.ends_at > now),
        start=_to_utc(chosen.starts_at),
        end=_to_utc(chosen.ends_at),
    )


def _current(subscriptions: list[Subscription]) -> Subscription | None:
    active = [s for s in subscriptions if s.is_active]
    return max(active, key=lambda s: (s.ends_at, s.id or 0)) if active else None


def _apply_admin_edit(session: Session, user: User, subs: list[Subscription], state: SubscriptionState,
                      now: datetime) -> str | None:
    """Apply an admin's D-G edit to the database (rule 4); returns what was done, None for nothing."""
    current = _current(subs)
    if state.type is SubscriptionType.FREE or state.active is False:
        if current is None:
            return None
        current.is_active = False
        current.expired_at = now
        return "ended"
    kind = state.type or (current.type if current else None)
    if kind is None or kind is SubscriptionType.FREE:
        if state.active is True:
            raise ValueError(f"{SUB_TYPE} is blank: set MONTHLY or YEARLY to grant a subscription")
        return None
    start = state.start or (current.starts_at if current else now)
    if state.end is not None:
        end = state.end
    elif current is not None and current.type is kind and state.start is None:
        end = current.ends_at
    else:
        end = start + PLAN_LENGTH[kind]
    if end <= start:
        raise ValueError(f"{SUB_END} {format_sheet_datetime(end)} is not after {SUB_START} "
                         f"{format_sheet_datetime(start)}")
    active = end > now
    if current is None:
        if not active:
            return None  # an expired period typed in the sheet is not recreated
        subscription = Subscription(user_id=user.id, type=kind, is_active=True, starts_at=start, ends_at=end,
                                    created_at=now, updated_at=now)
        session.add(subscription)
        subs.append(subscription)
        return "granted"
    current.type = kind
    current.starts_at = start
    current.ends_at = end
    current.is_active = active
    current.expired_at = None if active else (current.expired_at or now)
    return "updated" if active else "ended"


def _same_moment(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return _to_utc(a) == _to_utc(b)


def _state_cells(sheet: SubscriptionState, db: SubscriptionState) -> tuple[dict[str, CellValue], SubscriptionState]:
    """Cells of D-G to write so the sheet shows the database state, and the state the row will then show."""
    cells: dict[str, CellValue] = {}
    final = sheet
    type_ok = sheet.type is db.type or (not db.active and sheet.type is SubscriptionType.FREE)
    if not type_ok:
        cells[SUB_TYPE] = db.type.value.upper() if db.type else ""
        final = replace(final, type=db.type)
    if sheet.active is not db.active:
        cells[SUB_ACTIVE] = bool(db.active)
        final = replace(final, active=db.active)
    if not _same_moment(sheet.start, db.start):
        cells[SUB_START] = format_sheet_datetime(db.start)
        final = replace(final, start=db.start)
    if not _same_moment(sheet.end, db.end):
        cells[SUB_END] = format_sheet_datetime(db.end)
        final = replace(final, end=db.end)
    return cells, final


def _user_cells(user: User, contacts: int) -> dict[str, CellValue]:
    name = " ".join(p for p in (user.first_name, user.last_name) if p).strip()
    return {
        SUB_USERNAME: user.username or "",
        SUB_NAME: name,
        SUB_REGISTERED: format_sheet_datetime(user.created_at),
        SUB_CONTACTS: contacts,
    }


def _bot_cells_to_write(row: Row, wanted: dict[str, CellValue]) -> dict[str, CellValue]:
    cells: dict[str, CellValue] = {}
    for header, value in wanted.items():
        have = row.cell(header)
        if header == SUB_REGISTERED:
            try:
                same = format_sheet_datetime(parse_sheet_datetime(have)) == value
            except ValueError:
                same = False
        elif header == SUB_CONTACTS:
            same = parse_count(have) == value
        else:
            same = have == str(value).strip()
        if not same:
            cells[header] = value
    return cells


def sync_subscribers(session: Session, workbook: Workbook, now: datetime | None = None) -> dict[str, Any]:
    """Two-way subscriber sync between "Подписчики" and the database, by the rules of the module docstring.

    Returns counts: users, rows (matched), applied (admin edits applied to the database),
    rows_updated (rows written), appended, unknown_users, invalid, duplicates,
    deactivated_duplicates, and up to 20 problem descriptions.
    """
    now = _to_utc(now or utcnow())
    workbook.ensure_sheet(SUBSCRIBERS)
    rows = workbook.read(SUBSCRIBERS)
    problems: list[str] = []
    counts = {"users": 0, "rows": 0, "applied": 0, "rows_updated": 0, "appended": 0, "unknown_users": 0,
              "invalid": 0, "duplicates": 0, "deactivated_duplicates": 0}

    users = {u.telegram_id: u for u in session.scalars(select(User).order_by(User.id))}
    counts["users"] = len(users)
    subs_by_user: dict[int, list[Subscription]] = {}
    for sub in session.scalars(select(Subscription).order_by(Subscription.id)):
        subs_by_user.setdefault(sub.user_id, []).append(sub)
    contacts: dict[int, int] = {user_id: n for user_id, n in session.execute(
        select(ContactRequest.user_id, func.count()).group_by(ContactRequest.user_id))}

    # rule 5: at most one active subscription per user
    for subs in subs_by_user.values():
        current = _current(subs)
        for sub in subs:
            if sub.is_active and sub is not current:
                sub.is_active = False
                sub.expired_at = sub.expired_at or now
                counts["deactivated_duplicates"] += 1

    # rule 1: match rows by column A
    matched: list[tuple[Row, User]] = []
    seen_rows: dict[int, int] = {}
    for row in rows:
        raw_id = row.cell(SUB_USER_ID)
        if not raw_id:
            continue
        telegram_id = parse_count(raw_id)
        if telegram_id is None:
            counts["invalid"] += 1
            _problem(problems, f"{SUBSCRIBERS} row {row.number}: {SUB_USER_ID} {raw_id!r} is not a Telegram id")
            continue
        if telegram_id in seen_rows:
            counts["duplicates"] += 1
            _problem(problems, f"{SUBSCRIBERS} row {row.number}: user {telegram_id} already has row "
                               f"{seen_rows[telegram_id]}; this row is ignored")
            continue
        seen_rows[telegram_id] = row.number
        user = users.get(telegram_id)
        if user is None:
            counts["unknown_users"] += 1
            continue
        matched.append((row, user))
    counts["rows"] = len(matched)

    # rules 3-4: apply admin edits, then compute what to write back (rule 2, 6)
    parsed: list[tuple[Row, User, SubscriptionState]] = []
    for row, user in matched:
        try:
            state = SubscriptionState.from_row(row)
            stamp = row.cell(SUB_SYNCED)
            edited = stamp != state.fingerprint() and not (not stamp and state.blank)
            subs = subs_by_user.setdefault(user.id, [])
            if edited:  # _apply_admin_edit raises before it changes anything
                action = _apply_admin_edit(session, user, subs, state, now)
                if action:
                    counts["applied"] += 1
                    logger.info("sheets sync: user %s: admin edit in row %s applied (%s)",
                                user.telegram_id, row.number, action)
        except ValueError as exc:
            counts["invalid"] += 1
            _problem(problems, f"{SUBSCRIBERS} row {row.number} (user {user.telegram_id}): {exc}; row left as it is")
            continue
        parsed.append((row, user, state))

    session.flush()
    session.commit()

    for row, user, state in parsed:
        db_state = subscription_state(subs_by_user.get(user.id, []), now)
        cells, final = _state_cells(state, db_state)
        if row.cell(SUB_SYNCED) != final.fingerprint():
            cells[SUB_SYNCED] = final.fingerprint()
        cells.update(_bot_cells_to_write(row, _user_cells(user, max(user.contact_requests_count,
                                                                        contacts.get(user.id, 0)))))
        if cells:
            workbook.update(SUBSCRIBERS, row.number, cells)
            counts["rows_updated"] += 1
    workbook.flush()

    new_rows = []
    for telegram_id, user in users.items():
        if telegram_id in seen_rows:
            continue
        db_state = subscription_state(subs_by_user.get(user.id, []), now)
        new_rows.append({
            SUB_USER_ID: telegram_id,
            **_user_cells(user, max(user.contact_requests_count, contacts.get(user.id, 0))),
            SUB_TYPE: db_state.type.value.upper() if db_state.type else "",
            SUB_ACTIVE: bool(db_state.active),
            SUB_START: format_sheet_datetime(db_state.start),
            SUB_END: format_sheet_datetime(db_state.end),
            SUB_SYNCED: db_state.fingerprint(),
        })
    if new_rows:
        counts["appended"] = workbook.append(SUBSCRIBERS, new_rows, unique_by=SUB_USER_ID)
    return {**counts, "problems": problems, "synced_at": now.isoformat()}


# analytics ----------------------------------------------------------------------------------------
def daily_analytics(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Today's figures (UTC day of `now`), keyed by the "Аналитика" headers.

    Posts processed and published today, users registered today, subscriptions active now (flag set
    and end still ahead), contact requests today, and revenue, which is always 0: this system has no
    payments.
    """
    now = _to_utc(now or utcnow())
    start = datetime.combine(now.date(), time.min, tzinfo=UTC)
    end = start + timedelta(days=1)

    def count(column: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count(column)).where(*where)) or 0)

    return {
        AN_PROCESSED: count(Post.id, Post.processed_at >= start, Post.processed_at < end),
        AN_PUBLISHED: count(Post.id, Post.published_at >= start, Post.published_at < end),
        AN_NEW_USERS: count(User.id, User.created_at >= start, User.created_at < end),
        AN_ACTIVE_SUBS: count(Subscription.id, Subscription.is_active.is_(True), Subscription.ends_at > now),
        AN_CONTACTS: count(ContactRequest.id, ContactRequest.requested_at >= start, ContactRequest.requested_at < end),
        AN_REVENUE: 0,
    }


def _row_date(row: Row) -> date | None:
    try:
        moment = parse_sheet_datetime(row.cell(AN_DATE))
    except ValueError:
        return None
    return moment.date() if moment else None


def update_analytics(session: Session, workbook: Workbook, now: datetime | None = None) -> dict[str, Any]:
    """Write today's figures to "Аналитика": update today's row if there is one, else append it.

    One row per UTC day, so the hourly run refreshes the same row; an unchanged row is not written.
    Revenue is always 0 (no payments in this system). Returns the figures and the action taken
    ("updated", "appended" or "unchanged").
    """
    now = _to_utc(now or utcnow())
    today = now.date()
    figures = daily_analytics(session, now)
    workbook.ensure_sheet(ANALYTICS)
    row = next((r for r in workbook.read(ANALYTICS) if _row_date(r) == today), None)
    if row is None:
        appended = workbook.append(ANALYTICS, [{AN_DATE: today.strftime(DATE_FORMAT), **figures}], unique_by=AN_DATE)
        action = "appended" if appended else "unchanged"
    else:
        changed: dict[str, CellValue] = {h: v for h, v in figures.items() if parse_count(row.cell(h)) != v}
        if changed:
            workbook.update(ANALYTICS, row.number, changed)
            workbook.flush()
        action = "updated" if changed else "unchanged"
    return {
        "date": today.isoformat(),
        "action": action,
        "posts_processed": figures[AN_PROCESSED],
        "posts_published": figures[AN_PUBLISHED],
        "new_users": figures[AN_NEW_USERS],
        "active_subscriptions": figures[AN_ACTIVE_SUBS],
        "contact_requests": figures[AN_CONTACTS],
        "revenue": figures[AN_REVENUE],
    }
