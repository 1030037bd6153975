"""Maintenance tasks (queue `monitoring`): subscription expiry, statistics, clean-up.

Thin wrappers: the work is in :mod:`cars_bot.maintenance`.
"""

from __future__ import annotations

from typing import Any

from cars_bot.celery_app import app
from cars_bot.task_names import SYNC_SUBSCRIBERS
from cars_bot.tasks.base import CarsTask, task_result


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.monitoring_tasks.check_subscriptions_task",
          soft_time_limit=120, time_limit=180)
def check_subscriptions_task(self: CarsTask) -> dict[str, Any]:
    """Deactivate expired subscriptions; if any expired, push the change to the subscriber sheet."""
    from cars_bot.db.session import session_scope
    from cars_bot.maintenance import expire_subscriptions

    with session_scope() as session:
        expiry = expire_subscriptions(session)
    result = task_result(expiry)
    if expiry.expired:
        # Sent by name: the Sheets task lives in another module and may run on another worker.
        self.app.send_task(SYNC_SUBSCRIBERS, countdown=10)
        result["sync_enqueued"] = True
    return result


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.monitoring_tasks.collect_stats_task",
          soft_time_limit=60, time_limit=90)
def collect_stats_task(self: CarsTask) -> dict[str, Any]:
    """Database counts, queue depths (all priority levels), workers online, AI usage; persisted.

    (Lost work is recovered by `recover_lost_work_task`.)
    """
    from cars_bot.broker import queue_depths
    from cars_bot.db.session import session_scope
    from cars_bot.maintenance import database_stats, save_snapshot

    replies = self.app.control.ping(timeout=1.0) or []
    depths = queue_depths(self.app)
    with session_scope() as session:
        data = task_result(database_stats(session))
        data["queues"] = {name: {"ready": depth.ready, "unacked": depth.unacked} for name, depth in depths.items()}
        data["workers"] = len(replies)
        data["snapshot_id"] = save_snapshot(session, data)
    return data


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.monitoring_tasks.recover_lost_work_task",
          soft_time_limit=60, time_limit=90)
def recover_lost_work_task(self: CarsTask) -> dict[str, Any]:
    """The safety net (every 2 minutes): give back the messages of dead workers at once, and send again
    the tasks of posts left with no message (never sent, or lost). See `cars_bot.maintenance`."""
    from cars_bot.maintenance import recover_lost_work

    return task_result(recover_lost_work(self.app))


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.monitoring_tasks.cleanup_old_results_task",
          soft_time_limit=180, time_limit=240)
def cleanup_old_results_task(self: CarsTask, days_old: int = 7) -> dict[str, Any]:
    """Remove task results older than `days_old`, old stats snapshots and old failed-task records."""
    from cars_bot.config import get_settings
    from cars_bot.db.session import session_scope
    from cars_bot.maintenance import delete_old_results, delete_old_rows, expire_stale_reply_keys

    settings = get_settings()
    removed: dict[str, Any] = {"days_old": days_old}
    backend_client = getattr(self.app.backend, "client", None)
    if backend_client is not None:
        removed.update(task_result(delete_old_results(backend_client, days_old)))
    with self.app.connection_for_write() as conn:
        channel = conn.default_channel
        if hasattr(channel, "client"):
            removed["pidbox_reply_keys_expired"] = expire_stale_reply_keys(channel.client)
    with session_scope() as session:
        removed.update(task_result(delete_old_rows(session, stats_days=settings.stats_retention_days,
                                                   failed_days=settings.failed_task_retention_days)))
    return removed
