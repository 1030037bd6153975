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


def test_lost_posts_are_dispatched_again_and_the_rest_left_alone(db, celery_app_real, redis_client) -> None:
    from cars_bot.broker import broker_messages
    from cars_bot.maintenance import recover_lost_work
    from cars_bot.task_names import PROCESS_POST, PUBLISH_POST

    old, recent = utcnow() - timedelta(hours=1), utcnow()
    with db.begin() as session:
        channel = Channel(username="stuck")
        session.add(channel)
        posts = {
            "never sent": Post(message_id=1, found_at=old),
            "sent, lost": Post(message_id=2, found_at=old, dispatch_task_id="gone", dispatched_at=old),
            "sent, queued": Post(message_id=3, found_at=old, dispatch_task_id="q", dispatched_at=old),
            "just sent": Post(message_id=4, found_at=old, dispatch_task_id="new", dispatched_at=recent),
            "held": Post(message_id=5, found_at=old, processing_held=True),
            "run died": Post(message_id=6, status=PostStatus.PROCESSING, claimed_by="dead", updated_at=old),
            "running": Post(message_id=7, status=PostStatus.PROCESSING, claimed_by="busy"),
            "ready, lost": Post(message_id=8, status=PostStatus.READY, updated_at=old),
            "published": Post(message_id=9, status=PostStatus.PUBLISHED, updated_at=old),
        }
        for post in posts.values():
            post.channel, post.text = channel, "x"
        session.add_all(posts.values())
    ids = {name: post.id for name, post in posts.items()}
    celery_app_real.send_task(PROCESS_POST, args=[ids["sent, queued"]])

    result = recover_lost_work(celery_app_real, sessions=db)

    assert result.process == sorted([ids["never sent"], ids["sent, lost"], ids["run died"]])
    assert result.publish == [ids["ready, lost"]]
    sent = broker_messages(celery_app_real)
    assert sorted(m.first_arg for m in sent if m.task == PROCESS_POST) == sorted(
        [ids["sent, queued"], *result.process])
    assert [m.first_arg for m in sent if m.task == PUBLISH_POST] == [ids["ready, lost"]]
    with db() as session:
        rows = {p.id: p for p in session.scalars(select(Post))}
    assert rows[ids["run died"]].status == PostStatus.NEW and rows[ids["run died"]].claimed_by is None
    assert rows[ids["running"]].status == PostStatus.PROCESSING
    assert all(rows[pid].dispatch_task_id and rows[pid].dispatched_at > old for pid in result.process)
    # a second pass right after finds every message in the broker: nothing is sent twice
    again = recover_lost_work(celery_app_real, sessions=db)
    assert again.process == [] and again.publish == []


def test_orphaned_unacked_messages_are_restored_at_once(celery_app_real, redis_client) -> None:
    from cars_bot.broker import broker_messages, restore_orphans
    from cars_bot.task_names import PROCESS_POST

    sent = celery_app_real.send_task(PROCESS_POST, args=[41])
    with celery_app_real.connection_for_write() as conn:  # a consumer takes it and dies without an ack
        channel = conn.default_channel
        channel.qos.restore_at_shutdown = False
        assert channel.basic_get("ai_processing", no_ack=False) is not None
    assert redis_client.hlen("unacked") == 1

    outcome = restore_orphans(celery_app_real, timeout=1.0)

    assert outcome.answered and outcome.workers == 0 and outcome.restored == (sent.id,)
    assert redis_client.hlen("unacked") == 0
    assert [(m.task_id, m.first_arg) for m in broker_messages(celery_app_real)] == [(sent.id, 41)]


def test_a_post_that_moves_on_while_the_broker_is_read_is_left_alone(db) -> None:
    from sqlalchemy import update

    from cars_bot.maintenance import find_lost_posts

    old = utcnow() - timedelta(hours=1)
    with db.begin() as session:
        channel = Channel(username="race")
        quiet = Post(channel=channel, message_id=1, text="x", found_at=old)
        taken = Post(channel=channel, message_id=2, text="y", found_at=old)
        session.add_all([quiet, taken])

    def in_broker() -> tuple[set[int], set[int]]:  # meanwhile a worker takes one of them
        with db.begin() as session:
            session.execute(update(Post).where(Post.id == taken.id).values(status=PostStatus.PROCESSING))
        return set(), set()

    assert find_lost_posts(db, in_broker).process == [quiet.id]
    assert find_lost_posts(db, lambda: (set(), set())).process == [quiet.id]  # nothing is reset twice
