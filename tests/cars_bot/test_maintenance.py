"""The three maintenance tasks do real work, against a real database and the session's Redis."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from cars_bot.db.models import (
    AIUsage,
    Channel,
    FailedTask,
    Post,
    PostStatus,
    StatsSnapshot,
    Subscription,
    SubscriptionType,
    User,
    utcnow,
)
from cars_bot.maintenance import delete_old_results, expire_stale_reply_keys, expire_subscriptions


def _user_with_subscription(session, telegram_id: int, ends_at: datetime, active: bool = True) -> Subscription:
    user = User(telegram_id=telegram_id, first_name="Ivan")
    sub = Subscription(user=user, type=SubscriptionType.MONTHLY, is_active=active,
                       starts_at=ends_at - timedelta(days=30), ends_at=ends_at)
    session.add_all([user, sub])
    return sub


def test_expire_subscriptions_is_idempotent(db) -> None:
    now = utcnow()
    with db.begin() as session:
        _user_with_subscription(session, 1, now - timedelta(minutes=1))
        _user_with_subscription(session, 2, now - timedelta(days=3))
        _user_with_subscription(session, 3, now + timedelta(days=1))
    with db.begin() as session:
        first = expire_subscriptions(session, now)
    with db.begin() as session:
        second = expire_subscriptions(session, now)
    assert (first.expired, first.still_active, first.checked_at) == (2, 1, now)
    assert second.expired == 0
    with db() as session:
        rows = {s.user.telegram_id: s for s in session.scalars(select(Subscription))}
        assert rows[1].is_active is False and rows[1].expired_at is not None
        assert rows[1].expired_at.tzinfo is not None
        assert rows[3].is_active is True


def test_check_subscriptions_task_enqueues_subscriber_sync(db, celery_app_real, redis_client) -> None:
    from cars_bot.broker import queue_depths
    from cars_bot.tasks.monitoring_tasks import check_subscriptions_task

    with db.begin() as session:
        _user_with_subscription(session, 10, utcnow() - timedelta(hours=1))
    result = check_subscriptions_task.apply().get()
    assert result["expired"] == 1 and result["sync_enqueued"] is True
    # the sync task waits (countdown 10 s) in the sheets_sync queue
    assert queue_depths(celery_app_real, ["sheets_sync"])["sheets_sync"].ready == 1
    again = check_subscriptions_task.apply().get()
    assert again["expired"] == 0 and "sync_enqueued" not in again


def test_collect_stats_counts_queues_at_every_priority_and_persists(db, celery_app_real, redis_client) -> None:
    from cars_bot.tasks.monitoring_tasks import collect_stats_task

    now = utcnow()
    with db.begin() as session:
        channel = Channel(username="cars_msk", is_active=True)
        session.add(channel)
        session.add_all([
            Post(channel=channel, message_id=1, text="a", status=PostStatus.PUBLISHED),
            Post(channel=channel, message_id=2, text="b", status=PostStatus.REJECTED),
            Post(channel=channel, message_id=3, text="c", status=PostStatus.NEW),
        ])
        _user_with_subscription(session, 5, now + timedelta(days=3))
        session.add(AIUsage(backend="openai", model="gpt-4o-mini", prompt_tokens=100, completion_tokens=50,
                            total_tokens=150, cost_usd=0.0001))
    for priority in (0, 2, 5, 7, 9, 9):
        celery_app_real.send_task("cars_bot.tasks.ai_tasks.process_post_task", args=[1], priority=priority)
    data = collect_stats_task.apply().get()
    assert data["queues"]["ai_processing"]["ready"] == 6  # LLEN on the bare name would say 2
    assert data["posts"]["by_status"]["published"] == 1 and data["posts"]["total"] == 3
    assert data["users"] == 1 and data["active_subscriptions"] == 1 and data["active_channels"] == 1
    assert data["ai"]["tokens"] == 150 and data["ai"]["calls"] == 1
    assert data["workers"] == 0
    with db() as session:
        snapshot = session.get(StatsSnapshot, data["snapshot_id"])
        assert snapshot is not None and snapshot.data["queues"]["ai_processing"]["ready"] == 6


def test_cleanup_removes_old_results_old_snapshots_and_old_failures(db, celery_app_real, redis_client) -> None:
    from cars_bot.tasks.monitoring_tasks import cleanup_old_results_task

    now = datetime.now(UTC)
    old = {"status": "SUCCESS", "result": 1, "date_done": (now - timedelta(days=9)).isoformat()}
    fresh = {"status": "SUCCESS", "result": 2, "date_done": (now - timedelta(days=1)).isoformat()}
    redis_client.set("celery-task-meta-old-1", json.dumps(old))  # no TTL: would live forever
    redis_client.set("celery-task-meta-old-2", json.dumps(old), ex=3600)
    redis_client.set("celery-task-meta-fresh", json.dumps(fresh))
    redis_client.set("unrelated-key", "keep me")
    redis_client.rpush("abc.reply.celery.pidbox", "x")
    with db.begin() as session:
        session.add(StatsSnapshot(taken_at=now - timedelta(days=200), data={}))
        session.add(StatsSnapshot(taken_at=now, data={}))
        session.add(FailedTask(task_id="t1", task_name="x", exception="E", failed_at=now - timedelta(days=60)))
        session.add(FailedTask(task_id="t2", task_name="x", exception="E", failed_at=now))
    removed = cleanup_old_results_task.apply(kwargs={"days_old": 7}).get()
    assert removed["results_removed"] == 2 and removed["results_scanned"] >= 3
    assert removed["stats_snapshots"] == 1 and removed["failed_tasks"] == 1
    assert removed["pidbox_reply_keys_expired"] == 1
    assert redis_client.exists("celery-task-meta-fresh") and redis_client.exists("unrelated-key")
    assert not redis_client.exists("celery-task-meta-old-1")
    assert redis_client.ttl("abc.reply.celery.pidbox") > 0
    with db() as session:
        assert session.scalar(select(func.count()).select_from(StatsSnapshot)) == 1
        assert session.scalar(select(func.count()).select_from(FailedTask)) == 1


def test_delete_old_results_scans_in_batches(redis_client) -> None:
    old = json.dumps({"date_done": "2020-01-01T00:00:00+00:00"})
    for i in range(1200):
        redis_client.set(f"celery-task-meta-{i}", old)
    assert delete_old_results(redis_client, 7).results_removed == 1200
    assert expire_stale_reply_keys(redis_client) == 0


@pytest.mark.parametrize("aware", [True, False])
def test_naive_datetimes_are_refused(db, aware: bool) -> None:
    moment = datetime.now(UTC) if aware else datetime.now()
    with db() as session:
        session.add(StatsSnapshot(taken_at=moment, data={}))
        if aware:
            session.commit()
        else:
            with pytest.raises(Exception, match="naive datetime"):
                session.commit()


def test_stuck_posts_are_requeued_by_collect_stats(db, celery_app_real, redis_client) -> None:
    from cars_bot.broker import queue_depths
    from cars_bot.tasks.monitoring_tasks import collect_stats_task

    old = utcnow() - timedelta(hours=1)
    with db.begin() as session:
        channel = Channel(username="stuck")
        session.add(channel)
        session.add_all([
            Post(channel=channel, message_id=1, text="a", status=PostStatus.PROCESSING, claimed_by="lost",
                 updated_at=old),
            Post(channel=channel, message_id=2, text="b", status=PostStatus.READY, updated_at=old),
            Post(channel=channel, message_id=3, text="c", status=PostStatus.PROCESSING, claimed_by="busy"),
            Post(channel=channel, message_id=4, text="d", status=PostStatus.PUBLISHED, updated_at=old),
        ])
    data = collect_stats_task.apply().get()
    assert len(data["stuck_posts_requeued"]["process"]) == 1
    assert len(data["stuck_posts_requeued"]["publish"]) == 1
    depths = queue_depths(celery_app_real, ["ai_processing", "publishing"])
    assert depths["ai_processing"].ready == 1 and depths["publishing"].ready == 1
    with db() as session:
        statuses = dict(session.execute(select(Post.message_id, Post.status)).all())
    assert statuses[1] == PostStatus.NEW and statuses[3] == PostStatus.PROCESSING
