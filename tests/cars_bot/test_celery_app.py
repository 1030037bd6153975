"""The Celery app is configured exactly as the seed describes."""

import itertools

from celery.schedules import crontab

from cars_bot.broker import PRIORITY_STEPS, clamp_priority, list_level
from cars_bot.celery_app import (
    HARD_TIME_LIMIT,
    MAX_COUNTDOWN,
    VISIBILITY_TIMEOUT,
    app,
    route_task,
)


def test_core_settings_match_the_seed() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.timezone == "UTC" and conf.enable_utc
    assert conf.task_time_limit == 30 * 60 and conf.task_soft_time_limit == 25 * 60
    assert conf.worker_prefetch_multiplier == 2
    assert conf.worker_max_tasks_per_child == 100
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.result_expires and conf.result_expires > 0
    assert conf.worker_send_task_events and conf.task_send_sent_event


def test_visibility_timeout_exceeds_hard_limit_and_longest_countdown() -> None:
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert VISIBILITY_TIMEOUT > HARD_TIME_LIMIT and VISIBILITY_TIMEOUT > MAX_COUNTDOWN
    assert options["priority_steps"] == PRIORITY_STEPS == list(range(10))


def test_five_queues_and_routing_by_module() -> None:
    assert [q.name for q in app.conf.task_queues] == [
        "default", "ai_processing", "publishing", "sheets_sync", "monitoring"]
    cases = {
        "cars_bot.tasks.ai_tasks.process_post_task": ("ai_processing", 9),
        "cars_bot.tasks.publishing_tasks.publish_post_task": ("publishing", 5),
        "cars_bot.tasks.publishing_tasks.send_contact_info_task": ("publishing", 9),
        "cars_bot.tasks.sheets_tasks.sync_channels_task": ("sheets_sync", 3),
        "cars_bot.tasks.monitoring_tasks.collect_stats_task": ("monitoring", 3),
        "something.else": ("default", 5),
    }
    for name, (queue, priority) in cases.items():
        assert route_task(name) == {"queue": queue, "priority": priority}


def test_priority_semantics() -> None:
    assert clamp_priority(10) == 9 and clamp_priority(-3) == 0 and clamp_priority(None) == 5
    assert [list_level(p) for p in range(10)] == list(range(9, -1, -1))


def test_beat_schedule_is_the_seeds_six_entries_and_the_safety_net() -> None:
    schedule = {entry["task"].rsplit(".", 1)[1]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert set(schedule) == {"sync_channels_task", "sync_subscribers_task", "update_analytics_task",
                             "check_subscriptions_task", "collect_stats_task", "cleanup_old_results_task",
                             "recover_lost_work_task"}
    assert schedule["recover_lost_work_task"] == 120.0
    assert schedule["sync_channels_task"] == 60.0
    assert schedule["sync_subscribers_task"] == 300.0
    assert schedule["collect_stats_task"] == 900.0
    assert schedule["update_analytics_task"] == crontab(minute=0)
    assert schedule["check_subscriptions_task"] == crontab(hour=0, minute=0)
    assert schedule["cleanup_old_results_task"] == crontab(hour=3, minute=0)
    hourly = schedule["update_analytics_task"]
    assert hourly.hour == set(range(24)) and hourly.minute == {0}


def test_every_scheduled_task_is_registered() -> None:
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry["task"]
    for name in app.tasks:
        if name.startswith("cars_bot."):
            assert name.startswith("cars_bot.tasks.") and name.endswith("_task"), name


def test_seed_import_style() -> None:
    from cars_bot.tasks import (
        check_subscriptions_task,
        cleanup_old_results_task,
        collect_stats_task,
        process_post_task,
        publish_post_task,
    )

    # the seed's names are the registered tasks of the project's app, not look-alikes
    for task in (check_subscriptions_task, cleanup_old_results_task, collect_stats_task, process_post_task,
                 publish_post_task):
        assert task.app is app and task.name in app.tasks
        assert task.name.rsplit(".", 1)[1] == task.__name__


def _period_seconds(schedule) -> float:
    """An interval's seconds, or a crontab's shortest gap between two runs (minute by minute, 2 days)."""
    from datetime import UTC, datetime, timedelta

    if isinstance(schedule, (int, float)):
        return float(schedule)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    runs = [start + timedelta(minutes=m) for m in range(2 * 24 * 60)]
    runs = [t for t in runs if t.minute in schedule.minute and t.hour in schedule.hour
            and t.isoweekday() % 7 in schedule.day_of_week]
    return min((b - a).total_seconds() for a, b in itertools.pairwise(runs))


def test_every_periodic_task_expires_within_its_period() -> None:
    for name, entry in app.conf.beat_schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None and 0 < expires <= _period_seconds(entry["schedule"]), name
