"""Subscribers sync: "Подписчики" and the database, both ways, with ONE source of truth per column.

Rules (the write order common to every sync is in :mod:`cars_bot.sheets`):

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
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cars_bot.db.models import ContactRequest, Subscription, SubscriptionType, User, utcnow
from cars_bot.sheets.cells import (
    format_sheet_datetime,
    note_problem,
    parse_bool,
    parse_count,
    parse_sheet_datetime,
    parse_subscription_type,
    to_utc,
)
from cars_bot.sheets.workbook import (
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


@dataclass(frozen=True, slots=True)
class SubscriberSyncResult:
    """What one subscribers sync did: counts, up to 20 problem descriptions, and when it ran (ISO UTC)."""

    users: int  # users in the database
    rows: int  # rows matched to a user
    applied: int  # admin edits applied to the database
    rows_updated: int  # rows written
    appended: int
    unknown_users: int
    invalid: int
    duplicates: int
    deactivated_duplicates: int
    problems: tuple[str, ...]
    synced_at: str


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
        start=to_utc(chosen.starts_at),
        end=to_utc(chosen.ends_at),
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
    return to_utc(a) == to_utc(b)


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


def sync_subscribers(session: Session, workbook: Workbook, now: datetime | None = None) -> SubscriberSyncResult:
    """Two-way subscriber sync between "Подписчики" and the database, by the rules of the module docstring."""
    now = to_utc(now or utcnow())
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
            note_problem(problems, f"{SUBSCRIBERS} row {row.number}: {SUB_USER_ID} {raw_id!r} is not a Telegram id")
            continue
        if telegram_id in seen_rows:
            counts["duplicates"] += 1
            note_problem(problems, f"{SUBSCRIBERS} row {row.number}: user {telegram_id} already has row "
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
            note_problem(problems,
                         f"{SUBSCRIBERS} row {row.number} (user {user.telegram_id}): {exc}; row left as it is")
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
    return SubscriberSyncResult(**counts, problems=tuple(problems), synced_at=now.isoformat())
