"""Subscriber sync: the database owns activity and expiry; admin edits in D-G are applied once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cars_bot.db.models import ContactRequest, Post, Subscription, SubscriptionType, User
from cars_bot.maintenance import expire_subscriptions
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.subscriber_sync import STAMP_PREFIX, sync_subscribers
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
    Row,
)
from tests.cars_bot.sheets.conftest import NOW


def add_user(session: Session, telegram_id: int, *, username: str | None = None, first: str = "Иван",
             last: str | None = None, created: datetime = NOW - timedelta(days=10)) -> User:
    user = User(telegram_id=telegram_id, username=username, first_name=first, last_name=last,
                created_at=created, updated_at=created)
    session.add(user)
    session.flush()
    return user


def add_sub(session: Session, user: User, kind: SubscriptionType = SubscriptionType.MONTHLY, *,
            start: datetime = NOW - timedelta(days=5), days: int = 30, active: bool = True) -> Subscription:
    sub = Subscription(user_id=user.id, type=kind, is_active=active, starts_at=start,
                       ends_at=start + timedelta(days=days))
    session.add(sub)
    session.flush()
    return sub


def row_of(workbook: LocalWorkbook, telegram_id: int) -> Row:
    rows = [r for r in workbook.read(SUBSCRIBERS) if r.cell(SUB_USER_ID) == str(telegram_id)]
    assert len(rows) == 1, rows
    return rows[0]


def subs_of(session: Session, user: User) -> list[Subscription]:
    session.expire_all()
    return list(session.scalars(select(Subscription).where(Subscription.user_id == user.id).order_by(Subscription.id)))


def admin_edit(workbook: LocalWorkbook, telegram_id: int, cells: dict[str, str]) -> None:
    workbook.update(SUBSCRIBERS, row_of(workbook, telegram_id).number, cells)
    workbook.flush()


def test_new_users_get_a_row_with_the_database_state(session: Session, workbook: LocalWorkbook) -> None:
    paid = add_user(session, 111, username="paid_user", first="Пётр", last="Иванов")
    add_sub(session, paid)
    add_user(session, 222)
    session.commit()
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.appended == 2 and result.users == 2 and result.applied == 0
    row = row_of(workbook, 111)
    assert (row[SUB_USERNAME], row[SUB_NAME], row[SUB_TYPE], row[SUB_ACTIVE]) == ("paid_user", "Пётр Иванов",
                                                                                  "MONTHLY", "TRUE")
    assert (row[SUB_START], row[SUB_END]) == ("2025-02-27 10:00:00", "2025-03-29 10:00:00")
    assert row[SUB_REGISTERED] == "2025-02-22 10:00:00" and row[SUB_CONTACTS] == "0"
    assert row[SUB_SYNCED].startswith(STAMP_PREFIX)
    free = row_of(workbook, 222)
    assert (free[SUB_TYPE], free[SUB_ACTIVE], free[SUB_START], free[SUB_END]) == ("FREE", "FALSE", "", "")


def test_rerun_is_idempotent_no_duplicates_no_writes(session: Session, workbook: LocalWorkbook) -> None:
    add_sub(session, add_user(session, 111))
    add_user(session, 222)
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    content, writes = workbook.path.read_bytes(), workbook.writes
    result = sync_subscribers(session, workbook, now=NOW + timedelta(minutes=5))
    assert (result.appended, result.rows_updated, result.applied) == (0, 0, 0)
    assert workbook.writes == writes and workbook.path.read_bytes() == content
    assert len(workbook.read(SUBSCRIBERS)) == 2


def test_database_expiry_reaches_the_sheet(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    add_sub(session, user, start=NOW - timedelta(days=29))
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    assert row_of(workbook, 111)[SUB_ACTIVE] == "TRUE"
    later = NOW + timedelta(days=2)
    assert expire_subscriptions(session, now=later).expired == 1  # the daily job
    session.commit()
    result = sync_subscribers(session, workbook, now=later)
    assert result.applied == 0 and result.rows_updated == 1
    row = row_of(workbook, 111)
    assert (row[SUB_TYPE], row[SUB_ACTIVE], row[SUB_END]) == ("MONTHLY", "FALSE", "2025-03-05 10:00:00")
    assert [s.is_active for s in subs_of(session, user)] == [False]  # the sheet's old TRUE did not win
    assert sync_subscribers(session, workbook, now=later).rows_updated == 0


def test_end_date_passing_shows_inactive_even_before_the_daily_job(session: Session, workbook: LocalWorkbook) -> None:
    add_sub(session, add_user(session, 111), start=NOW - timedelta(days=29))
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    sync_subscribers(session, workbook, now=NOW + timedelta(days=1, hours=1))
    assert row_of(workbook, 111)[SUB_ACTIVE] == "FALSE"


def test_admin_edit_reaches_the_database_once(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    add_sub(session, user)
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    admin_edit(workbook, 111, {SUB_END: "2025-06-30"})
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.applied == 1
    [sub] = subs_of(session, user)
    assert sub.ends_at == datetime.fromisoformat("2025-06-30T00:00:00+00:00") and sub.is_active
    row = row_of(workbook, 111)
    assert row[SUB_END] == "2025-06-30"  # equal to the database: the admin's spelling is kept
    # the next run sees no edit and changes nothing
    result = sync_subscribers(session, workbook, now=NOW + timedelta(minutes=5))
    assert (result.applied, result.rows_updated) == (0, 0)


def test_admin_edit_with_russian_date_and_lowercase_type(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    admin_edit(workbook, 111, {SUB_TYPE: "yearly", SUB_ACTIVE: "TRUE", SUB_START: "01.03.2025",
                               SUB_END: "01.03.2026"})
    assert sync_subscribers(session, workbook, now=NOW).applied == 1
    [sub] = subs_of(session, user)
    assert sub.type is SubscriptionType.YEARLY and sub.is_active
    assert sub.ends_at.year == 2026
    assert sync_subscribers(session, workbook, now=NOW).applied == 0


def test_uppercase_types_map_to_the_enum(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    session.commit()
    workbook.append(SUBSCRIBERS, [{SUB_USER_ID: "111", SUB_TYPE: "YEARLY", SUB_ACTIVE: "TRUE",
                                   SUB_START: "2025-03-01 00:00:00", SUB_END: "2026-03-01 00:00:00"}])
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.applied == 1 and result.appended == 0
    [sub] = subs_of(session, user)
    assert sub.type is SubscriptionType.YEARLY
    assert row_of(workbook, 111)[SUB_TYPE] == "YEARLY"
    # unchanged uppercase values are not mistaken for an edit on the next run (prior defect 6)
    second = sync_subscribers(session, workbook, now=NOW + timedelta(minutes=5))
    assert (second.applied, second.rows_updated) == (0, 0)


def test_blank_dates_are_filled_once_and_never_slide(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    session.commit()
    workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 111, SUB_TYPE: "MONTHLY", SUB_ACTIVE: "TRUE"}])
    sync_subscribers(session, workbook, now=NOW)
    [sub] = subs_of(session, user)
    assert (sub.starts_at, sub.ends_at) == (NOW, NOW + timedelta(days=30))
    row = row_of(workbook, 111)
    assert (row[SUB_START], row[SUB_END]) == ("2025-03-04 10:00:00", "2025-04-03 10:00:00")
    for hours in (1, 5, 48):
        sync_subscribers(session, workbook, now=NOW + timedelta(hours=hours))
    [sub] = subs_of(session, user)
    assert (sub.starts_at, sub.ends_at) == (NOW, NOW + timedelta(days=30))
    # clearing the dates later is an edit too, but keeps the current period
    admin_edit(workbook, 111, {SUB_START: "", SUB_END: ""})
    sync_subscribers(session, workbook, now=NOW + timedelta(days=3))
    [sub] = subs_of(session, user)
    assert (sub.starts_at, sub.ends_at) == (NOW, NOW + timedelta(days=30))
    assert row_of(workbook, 111)[SUB_END] == "2025-04-03 10:00:00"


def test_free_means_inactive(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    add_sub(session, user)
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    admin_edit(workbook, 111, {SUB_TYPE: "FREE", SUB_ACTIVE: "TRUE"})  # the prior system made this a 30-day grant
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.applied == 1
    assert [s.is_active for s in subs_of(session, user)] == [False]
    row = row_of(workbook, 111)
    assert (row[SUB_TYPE], row[SUB_ACTIVE]) == ("FREE", "FALSE")
    assert sync_subscribers(session, workbook, now=NOW).rows_updated == 0


def test_free_row_for_a_user_without_subscription_creates_nothing(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    session.commit()
    workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 111, SUB_TYPE: "free", SUB_ACTIVE: "TRUE"}])
    sync_subscribers(session, workbook, now=NOW)
    assert subs_of(session, user) == []
    assert row_of(workbook, 111)[SUB_ACTIVE] == "FALSE"


def test_past_end_date_cannot_resurrect_a_subscription(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    session.commit()
    workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 111, SUB_TYPE: "MONTHLY", SUB_ACTIVE: "TRUE",
                                   SUB_START: "2025-01-01", SUB_END: "2025-01-31"}])
    sync_subscribers(session, workbook, now=NOW)
    assert subs_of(session, user) == []
    row = row_of(workbook, 111)
    assert (row[SUB_TYPE], row[SUB_ACTIVE], row[SUB_START], row[SUB_END]) == ("FREE", "FALSE", "", "")


def test_at_most_one_active_subscription(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    add_sub(session, user, days=30)
    add_sub(session, user, SubscriptionType.YEARLY, days=365)
    session.commit()
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.deactivated_duplicates == 1
    assert [(s.type, s.is_active) for s in subs_of(session, user)] == [
        (SubscriptionType.MONTHLY, False), (SubscriptionType.YEARLY, True)]
    assert row_of(workbook, 111)[SUB_TYPE] == "YEARLY"
    # granting in the sheet updates the current subscription instead of adding a second one
    admin_edit(workbook, 111, {SUB_TYPE: "MONTHLY", SUB_START: "", SUB_END: ""})
    sync_subscribers(session, workbook, now=NOW)
    active = [s for s in subs_of(session, user) if s.is_active]
    assert len(active) == 1 and active[0].type is SubscriptionType.MONTHLY
    assert active[0].ends_at == active[0].starts_at + timedelta(days=30)


def test_invalid_rows_are_reported_and_left_alone(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111)
    add_sub(session, user)
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    admin_edit(workbook, 111, {SUB_TYPE: "MONTLY"})
    before = row_of(workbook, 111)
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.invalid == 1 and "MONTLY" in result.problems[0]
    assert row_of(workbook, 111) == before
    assert [s.is_active for s in subs_of(session, user)] == [True]


def test_rows_match_by_column_a_only(session: Session, workbook: LocalWorkbook) -> None:
    add_user(session, 111, username="222")
    add_user(session, 222)
    session.commit()
    workbook.append(SUBSCRIBERS, [
        {SUB_USER_ID: "999", SUB_USERNAME: "111"},  # unknown user, mentions 111 elsewhere
        {SUB_USER_ID: "222"},
        {SUB_USER_ID: "222", SUB_NAME: "duplicate"},
        {SUB_USER_ID: "abc"},
    ])
    result = sync_subscribers(session, workbook, now=NOW)
    assert (result.unknown_users, result.duplicates, result.invalid, result.appended) == (1, 1, 1, 1)
    rows = workbook.read(SUBSCRIBERS)
    assert rows[0][SUB_USERNAME] == "111" and rows[0][SUB_TYPE] == ""  # unknown user's row untouched
    assert rows[2][SUB_NAME] == "duplicate" and rows[2][SUB_TYPE] == ""
    assert rows[1][SUB_TYPE] == "FREE"
    assert [r[SUB_USER_ID] for r in rows] == ["999", "222", "222", "abc", "111"]


def test_bot_columns_follow_the_database(session: Session, workbook: LocalWorkbook) -> None:
    user = add_user(session, 111, username="old")
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    user.username = "new"
    user.contact_requests_count = 3
    session.commit()
    result = sync_subscribers(session, workbook, now=NOW)
    assert result.rows_updated == 1
    row = row_of(workbook, 111)
    assert (row[SUB_USERNAME], row[SUB_CONTACTS]) == ("new", "3")


def test_contact_request_rows_count(session: Session, workbook: LocalWorkbook) -> None:
    from cars_bot.db.models import Channel

    user = add_user(session, 111)
    channel = Channel(username="chan_one")
    session.add(channel)
    session.flush()
    for message_id in (1, 2):
        post = Post(channel_id=channel.id, message_id=message_id)
        session.add(post)
        session.flush()
        session.add(ContactRequest(user_id=user.id, post_id=post.id, requested_at=NOW))
    session.commit()
    sync_subscribers(session, workbook, now=NOW)
    assert row_of(workbook, 111)[SUB_CONTACTS] == "2"


@pytest.mark.parametrize("stamp", ["", "v1:000000000000"])
def test_unstamped_or_stale_rows_count_as_admin_edits(session: Session, workbook: LocalWorkbook, stamp: str) -> None:
    user = add_user(session, 111)
    session.commit()
    workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 111, SUB_TYPE: "MONTHLY", SUB_ACTIVE: "TRUE",
                                   SUB_START: "2025-03-01", SUB_END: "2025-03-31", SUB_SYNCED: stamp}])
    assert sync_subscribers(session, workbook, now=NOW).applied == 1
    assert subs_of(session, user)[0].ends_at.day == 31
