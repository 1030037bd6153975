"""Maintenance work behind the monitoring tasks: subscription expiry, statistics, clean-up.

Plain functions over a SQLAlchemy session and Redis clients, testable without a worker. Each returns a
small frozen dataclass; the monitoring tasks store them as dicts (:func:`cars_bot.tasks.base.task_result`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
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


#: How long a post may go without a message for it in the broker before the safety net sends its task
#: again. A task's message is in the broker (ready, or delivered and unacked) from its send until its
#: ack, except for an instant while a worker takes it: the margin only absorbs that and clock skew.
RECOVERY_GRACE = timedelta(minutes=2)
#: How often beat runs the safety net (`recover_lost_work_task`). With RECOVERY_GRACE this bounds
#: recovery: a dead worker's messages are given back within RECOVERY_INTERVAL, a post whose message
#: was lost is dispatched again within RECOVERY_GRACE + RECOVERY_INTERVAL (4 minutes).
RECOVERY_INTERVAL = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class LostPosts:
    """Posts whose work was lost: ids to hand to processing, and ids to hand to publishing."""

    process: list[int]   # new (never sent, or its message lost) or processing whose run died
    publish: list[int]   # ready or publishing with no publish message left


def _stuck(session: Session, cutoff: datetime,
           among: list[int] | None = None) -> tuple[list[int], list[int], list[int]]:
    """(new, processing, ready or publishing) post ids untouched since `cutoff`, optionally among ids."""
    stale = Post.updated_at < cutoff
    new_unsent = or_(Post.dispatched_at < cutoff, and_(Post.dispatched_at.is_(None), Post.found_at < cutoff))
    queries = (
        select(Post.id).where(Post.status == PostStatus.NEW, Post.processing_held.is_(False), new_unsent),
        select(Post.id).where(Post.status == PostStatus.PROCESSING, stale),
        select(Post.id).where(Post.status.in_([PostStatus.READY, PostStatus.PUBLISHING]), stale),
    )
    if among is None:
        new, processing, publishing = (list(session.scalars(query)) for query in queries)
        return new, processing, publishing
    found: tuple[list[int], list[int], list[int]] = ([], [], [])
    for start in range(0, len(among), SCAN_BATCH):  # a bounded IN list per query
        chunk = among[start:start + SCAN_BATCH]
        for ids, query in zip(found, queries, strict=True):
            ids.extend(session.scalars(query.where(Post.id.in_(chunk))))
    return found


def find_lost_posts(sessions: Any, in_broker: Callable[[], tuple[set[int], set[int]]], *,
                    now: datetime | None = None, grace: timedelta = RECOVERY_GRACE) -> LostPosts:
    """Posts stuck before a final status with no message for them in the broker (prior defect 5,
    issue 10). `in_broker()` gives the post ids the broker holds a process / publish message for
    (ready or unacked); it is called only when some post is a candidate, and outside any transaction
    (reading the queues takes time; a SQLite write lock would stall the workers meanwhile). The
    candidates are checked again afterwards, so a post that moved on in the meantime is left alone.
    A post untouched for less than `grace` is left alone.

    Posts in `processing` whose run died are reset to `new` (their claim released). Posts stored with
    `--no-process` (held) are left alone. Sending the tasks again is safe: processing is claimed by
    one task id, publishing resumes from its recorded intent, so neither runs twice.
    """
    cutoff = (now or utcnow()) - grace
    with sessions.begin() as session:
        candidates = [pid for ids in _stuck(session, cutoff) for pid in ids]
    if not candidates:
        return LostPosts(process=[], publish=[])
    processing, publishing = in_broker()
    with sessions.begin() as session:
        new, died, publish = _stuck(session, cutoff, candidates)
        new = [post_id for post_id in new if post_id not in processing]
        died = [post_id for post_id in died if post_id not in processing]
        if died:
            session.execute(update(Post).where(Post.id.in_(died), Post.status == PostStatus.PROCESSING,
                                               Post.updated_at < cutoff)
                            .values(status=PostStatus.NEW, claimed_by=None)
                            .execution_options(synchronize_session=False))
    publish = [post_id for post_id in publish if post_id not in publishing]
    return LostPosts(process=sorted(new + died), publish=sorted(publish))


@dataclass(frozen=True, slots=True)
class LostWorkRecovered:
    """One pass of the safety net: orphaned messages given back, and posts whose tasks were sent again."""

    workers_answered: bool        # False: a worker stayed silent, so no unacked message was touched
    orphans_restored: list[str]   # task ids given back to their queue (their worker died)
    process: list[int]            # posts sent to processing again
    publish: list[int]            # posts sent to publishing again


def recover_lost_work(app: Any, sessions: Any = None, now: datetime | None = None,
                      grace: timedelta = RECOVERY_GRACE, timeout: float = 2.0) -> LostWorkRecovered:
    """The safety net: give back the unacked messages no live worker holds, then send the tasks of the
    posts with no message left (:func:`find_lost_posts`), recording each processing dispatch."""
    from cars_bot.broker import broker_messages, restore_orphans
    from cars_bot.db.session import session_factory
    from cars_bot.posts import record_dispatches
    from cars_bot.task_names import PROCESS_POST, PUBLISH_POST

    def in_broker() -> tuple[set[int], set[int]]:
        messages = broker_messages(app)
        return ({m.first_arg for m in messages if m.task == PROCESS_POST},
                {m.first_arg for m in messages if m.task == PUBLISH_POST})

    sessions = sessions or session_factory()
    orphans = restore_orphans(app, timeout=timeout)
    lost = find_lost_posts(sessions, in_broker, now=now, grace=grace)
    dispatches = [(post_id, app.send_task(PROCESS_POST, args=[post_id]).id) for post_id in lost.process]
    for post_id in lost.publish:
        app.send_task(PUBLISH_POST, args=[post_id])
    if dispatches:
        with sessions.begin() as session:
            record_dispatches(session, dispatches)
    return LostWorkRecovered(workers_answered=orphans.answered, orphans_restored=list(orphans.restored),
                             process=lost.process, publish=lost.publish)
