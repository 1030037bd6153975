"""Maintenance work behind the monitoring tasks: subscription expiry, statistics, clean-up.

Plain functions over a SQLAlchemy session and Redis clients, testable without a worker. Each returns a
small frozen dataclass; the monitoring tasks store them as dicts (:func:`cars_bot.tasks.base.task_result`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cars_bot.db.models import (
    AIUsage,
    Channel,
    FailedTask,
    Post,
    PostStatus,
    StatsSnapshot,
    Subscription,
    User,
    utcnow,
)

SCAN_BATCH = 500
RESULT_KEY_PATTERNS = ("celery-task-meta-*", "celery-taskset-meta-*")
PIDBOX_REPLY_PATTERN = "*.reply.celery.pidbox"
PIDBOX_REPLY_TTL = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class SubscriptionExpiry:
    """One expiry run: subscriptions deactivated by it, those still active, and when it ran."""

    expired: int
    still_active: int
    checked_at: datetime


def expire_subscriptions(session: Session, now: datetime | None = None) -> SubscriptionExpiry:
    """Deactivate every active subscription whose end has passed (UTC). Running it twice is harmless."""
    now = now or utcnow()
    result = session.execute(
        update(Subscription)
        .where(Subscription.is_active.is_(True), Subscription.ends_at < now)
        .values(is_active=False, expired_at=now)
        .execution_options(synchronize_session=False)
    )
    active = session.scalar(select(func.count()).select_from(Subscription).where(Subscription.is_active.is_(True)))
    return SubscriptionExpiry(expired=result.rowcount or 0, still_active=active or 0, checked_at=now)


@dataclass(frozen=True, slots=True)
class PostCounts:
    """Posts in the database: all of them, and per status (every status present, 0 when none)."""

    total: int
    by_status: dict[str, int]


@dataclass(frozen=True, slots=True)
class AIUsageTotals:
    """AI backend calls, tokens and cost: all time, and over the last 24 hours."""

    calls: int
    tokens: int
    cost_usd: float
    calls_24h: int
    tokens_24h: int
    cost_usd_24h: float


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    """The database half of a stats snapshot (collect_stats_task adds queues and workers)."""

    posts: PostCounts
    published: int
    duplicates: int  # reposts of an ad already published, not published again
    users: int
    active_subscriptions: int
    active_channels: int
    ai: AIUsageTotals


def database_stats(session: Session, now: datetime | None = None) -> DatabaseStats:
    """Counts from the database: posts by status, users, subscriptions, channels, AI usage."""
    now = now or utcnow()
    by_status = {status.value: 0 for status in PostStatus}
    for status, count in session.execute(select(Post.status, func.count()).group_by(Post.status)):
        by_status[PostStatus(status).value] = count
    day_ago = now - timedelta(days=1)
    usage_total = session.execute(
        select(func.count(), func.coalesce(func.sum(AIUsage.total_tokens), 0),
               func.coalesce(func.sum(AIUsage.cost_usd), 0.0))
    ).one()
    usage_day = session.execute(
        select(func.count(), func.coalesce(func.sum(AIUsage.total_tokens), 0),
               func.coalesce(func.sum(AIUsage.cost_usd), 0.0)).where(AIUsage.created_at >= day_ago)
    ).one()
    return DatabaseStats(
        posts=PostCounts(total=sum(by_status.values()), by_status=by_status),
        published=by_status[PostStatus.PUBLISHED.value],
        duplicates=by_status[PostStatus.DUPLICATE.value],
        users=session.scalar(select(func.count()).select_from(User)) or 0,
        active_subscriptions=session.scalar(
            select(func.count()).select_from(Subscription).where(
                Subscription.is_active.is_(True), Subscription.ends_at >= now)
        ) or 0,
        active_channels=session.scalar(
            select(func.count()).select_from(Channel).where(Channel.is_active.is_(True))
        ) or 0,
        ai=AIUsageTotals(
            calls=usage_total[0], tokens=int(usage_total[1]), cost_usd=round(float(usage_total[2]), 6),
            calls_24h=usage_day[0], tokens_24h=int(usage_day[1]), cost_usd_24h=round(float(usage_day[2]), 6),
        ),
    )


def save_snapshot(session: Session, data: dict[str, Any], now: datetime | None = None) -> int:
    """Persist one stats snapshot (JSON-shaped, as collect_stats_task returns it); returns its id."""
    snapshot = StatsSnapshot(taken_at=now or utcnow(), data=data)
    session.add(snapshot)
    session.flush()
    return snapshot.id


@dataclass(frozen=True, slots=True)
class OldRowsDeleted:
    """Rows removed past their retention: stats snapshots and failed-task records."""

    stats_snapshots: int
    failed_tasks: int


def delete_old_rows(session: Session, *, stats_days: int, failed_days: int,
                    now: datetime | None = None) -> OldRowsDeleted:
    """Remove stats snapshots and failed-task records past their retention."""
    now = now or utcnow()
    stats = session.execute(
        delete(StatsSnapshot).where(StatsSnapshot.taken_at < now - timedelta(days=stats_days))
    ).rowcount
    failed = session.execute(
        delete(FailedTask).where(FailedTask.failed_at < now - timedelta(days=failed_days))
    ).rowcount
    return OldRowsDeleted(stats_snapshots=stats or 0, failed_tasks=failed or 0)


@dataclass(frozen=True, slots=True)
class OldResultsDeleted:
    """Task results in the Redis result backend: keys looked at, and keys removed as too old."""

    results_scanned: int
    results_removed: int


def delete_old_results(client: Any, days_old: int, now: datetime | None = None) -> OldResultsDeleted:
    """Delete task results older than `days_old` from a Redis result backend.

    Walks the keys with SCAN (never KEYS, which blocks Redis), reads each result's `date_done` and
    UNLINKs the old ones, including results stored without a TTL (celery#7801).
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=days_old)
    scanned = removed = 0
    for pattern in RESULT_KEY_PATTERNS:
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                removed += _delete_batch_if_old(client, batch, cutoff)
                scanned += len(batch)
                batch = []
        if batch:
            removed += _delete_batch_if_old(client, batch, cutoff)
            scanned += len(batch)
    return OldResultsDeleted(results_scanned=scanned, results_removed=removed)


def _delete_batch_if_old(client: Any, keys: list[Any], cutoff: datetime) -> int:
    values = client.mget(keys)
    old = [key for key, raw in zip(keys, values, strict=True) if raw is not None and _done_before(raw, cutoff)]
    if old:
        client.unlink(*old)
    return len(old)


def _done_before(raw: bytes | str, cutoff: datetime) -> bool:
    try:
        meta = json.loads(raw)
        done = datetime.fromisoformat(meta["date_done"])
    except (ValueError, KeyError, TypeError):
        return False
    if done.tzinfo is None:
        done = done.replace(tzinfo=cutoff.tzinfo)
    return done < cutoff


def expire_stale_reply_keys(client: Any) -> int:
    """Give a TTL to remote-control reply keys that have none, so they cannot pile up (celery#6089)."""
    fixed = 0
    for key in client.scan_iter(match=PIDBOX_REPLY_PATTERN, count=SCAN_BATCH):
        if client.ttl(key) == -1:
            client.expire(key, PIDBOX_REPLY_TTL)
            fixed += 1
    return fixed


#: A post untouched this long in processing/ready/publishing lost its task (a purge, a crash whose
#: message was not redelivered): longer than the pipeline's hard limits (360 s, 90 s) with margin.
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class StuckPosts:
    """Posts made claimable again: ids to hand to processing, and ids to hand to publishing."""

    process: list[int]
    publish: list[int]


def recover_stuck_posts(session: Session, now: datetime | None = None,
                        older_than: timedelta = STUCK_AFTER) -> StuckPosts:
    """Find posts stuck in the pipeline and make them claimable again (prior defect 5: posts stranded
    forever). Returns the ids to hand to processing and to publishing.

    Safe against a late redelivery of the original message: processing is claimed by task id, and
    publishing resumes from its recorded intent, so neither runs twice.
    """
    cutoff = (now or utcnow()) - older_than
    stale = Post.updated_at < cutoff
    processing = list(session.scalars(select(Post.id).where(Post.status == PostStatus.PROCESSING, stale)))
    if processing:
        session.execute(update(Post).where(Post.id.in_(processing))
                        .values(status=PostStatus.NEW, claimed_by=None)
                        .execution_options(synchronize_session=False))
    publishing = list(session.scalars(select(Post.id).where(
        Post.status.in_([PostStatus.READY, PostStatus.PUBLISHING]), stale)))
    return StuckPosts(process=processing, publish=publishing)
