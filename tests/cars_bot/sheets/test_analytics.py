"""Analytics: one row per UTC day, refreshed in place."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from cars_bot.db.models import AIUsage, Channel, ContactRequest, Post, PostStatus, Subscription, SubscriptionType, User
from cars_bot.sheets.analytics import AnalyticsAction, AnalyticsUpdate, update_analytics
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import (
    AN_ACTIVE_SUBS,
    AN_AI_COST,
    AN_CONTACTS,
    AN_DATE,
    AN_NEW_USERS,
    AN_PROCESSED,
    AN_PUBLISHED,
    AN_REVENUE,
    ANALYTICS,
)
from tests.cars_bot.sheets.conftest import NOW

YESTERDAY = NOW - timedelta(days=1)


def seed(session: Session) -> None:
    channel = Channel(username="chan_one")
    session.add(channel)
    session.flush()
    posts = [
        Post(channel_id=channel.id, message_id=1, processed_at=NOW - timedelta(hours=2),
             published_at=NOW - timedelta(hours=1), status=PostStatus.PUBLISHED),
        Post(channel_id=channel.id, message_id=2, processed_at=NOW - timedelta(hours=3), status=PostStatus.REJECTED),
        Post(channel_id=channel.id, message_id=3, processed_at=YESTERDAY, published_at=YESTERDAY),
        Post(channel_id=channel.id, message_id=4),  # not processed yet
    ]
    session.add_all(posts)
    today_user = User(telegram_id=1, first_name="a", created_at=NOW - timedelta(hours=9))
    old_user = User(telegram_id=2, first_name="b", created_at=YESTERDAY)
    session.add_all([today_user, old_user])
    session.flush()
    session.add_all([
        Subscription(user_id=today_user.id, type=SubscriptionType.MONTHLY, is_active=True,
                     starts_at=NOW, ends_at=NOW + timedelta(days=30)),
        Subscription(user_id=old_user.id, type=SubscriptionType.MONTHLY, is_active=True,  # ended, not yet expired
                     starts_at=NOW - timedelta(days=40), ends_at=NOW - timedelta(days=10)),
        ContactRequest(user_id=today_user.id, post_id=posts[0].id, requested_at=NOW - timedelta(minutes=5)),
        ContactRequest(user_id=old_user.id, post_id=posts[0].id, requested_at=YESTERDAY),
        AIUsage(backend="openai", model="gpt-4o-mini", cost_usd=0.0125, created_at=NOW - timedelta(hours=2)),
        AIUsage(backend="openai", model="gpt-4o-mini", cost_usd=0.0025, created_at=NOW - timedelta(hours=1)),
        AIUsage(backend="openai", model="gpt-4o-mini", cost_usd=1.0, created_at=YESTERDAY),
    ])
    session.commit()


def test_one_row_per_day(session: Session, workbook: LocalWorkbook) -> None:
    seed(session)
    result = update_analytics(session, workbook, now=NOW)
    assert result == AnalyticsUpdate(date="2025-03-04", action=AnalyticsAction.APPENDED, posts_processed=2,
                                     posts_published=1, new_users=1, active_subscriptions=1, contact_requests=1,
                                     revenue=0, ai_cost_usd=0.015)
    [row] = workbook.read(ANALYTICS)
    assert float(row[AN_AI_COST]) == 0.015  # the day's AI cost (yesterday's request is not counted)
    assert (row[AN_DATE], row[AN_PROCESSED], row[AN_PUBLISHED], row[AN_NEW_USERS], row[AN_ACTIVE_SUBS],
            row[AN_CONTACTS], row[AN_REVENUE]) == ("2025-03-04", "2", "1", "1", "1", "1", "0")

    # an hour later, unchanged: nothing written
    writes = workbook.writes
    assert update_analytics(session, workbook, now=NOW + timedelta(hours=1)).action is AnalyticsAction.UNCHANGED
    assert workbook.writes == writes

    # more work the same day: the same row is updated
    session.add(Post(channel_id=1, message_id=5, processed_at=NOW + timedelta(hours=1)))
    session.commit()
    result = update_analytics(session, workbook, now=NOW + timedelta(hours=2))
    assert result.action is AnalyticsAction.UPDATED and result.posts_processed == 3
    rows = workbook.read(ANALYTICS)
    assert len(rows) == 1 and rows[0][AN_PROCESSED] == "3"

    # the next UTC day gets its own row
    result = update_analytics(session, workbook, now=NOW + timedelta(days=1))
    assert result.action is AnalyticsAction.APPENDED and result.posts_processed == 0
    assert [r[AN_DATE] for r in workbook.read(ANALYTICS)] == ["2025-03-04", "2025-03-05"]


def test_existing_row_in_another_date_format_is_found(session: Session, workbook: LocalWorkbook) -> None:
    workbook.append(ANALYTICS, [{AN_DATE: "03.03.2025", AN_PROCESSED: 7}, {AN_DATE: "04.03.2025", AN_PROCESSED: 9}])
    result = update_analytics(session, workbook, now=NOW)
    assert result.action is AnalyticsAction.UPDATED
    rows = workbook.read(ANALYTICS)
    assert len(rows) == 2 and rows[0][AN_PROCESSED] == "7" and rows[1][AN_PROCESSED] == "0"
    assert rows[1][AN_DATE] == "04.03.2025"


def test_day_boundary_is_utc_midnight(session: Session, workbook: LocalWorkbook) -> None:
    channel = Channel(username="chan_one")
    session.add(channel)
    session.flush()
    midnight = NOW.replace(hour=0)
    session.add_all([Post(channel_id=channel.id, message_id=1, processed_at=midnight),
                     Post(channel_id=channel.id, message_id=2, processed_at=midnight - timedelta(seconds=1))])
    session.commit()
    assert update_analytics(session, workbook, now=NOW).posts_processed == 1
