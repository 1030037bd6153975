"""Priorities mean what the seed says, on a real Redis: 9 is served first, every step distinct."""

import random

import pytest

from tests.workers import celery_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TASK = "cars_bot.tasks.monitoring_tasks.check_subscriptions_task"


def test_consumption_order_follows_priority(celery_app_real, db, tmp_path) -> None:
    app = celery_app_real
    priorities = [*list(range(10)), 10]
    random.Random(7).shuffle(priorities)
    sent = [(p, app.send_task(TASK, priority=p, queue="monitoring")) for p in priorities]
    with celery_worker(app, queues="monitoring", log=tmp_path / "worker.log"):
        for _priority, result in sent:
            result.get(timeout=60)
    done = sorted(sent, key=lambda item: item[1].date_done)
    order = [priority for priority, _ in done]
    # 10 is clamped to 9; between two 9s the order is FIFO
    assert [min(p, 9) for p in order] == [9, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0], order


def test_default_priority_sits_between_urgent_and_background(celery_app_real, db, tmp_path) -> None:
    app = celery_app_real
    low = app.send_task(TASK, priority=1, queue="monitoring")
    default = app.send_task(TASK, queue="monitoring")  # the monitoring queue's default: 3
    high = app.send_task(TASK, priority=8, queue="monitoring")
    with celery_worker(app, queues="monitoring", log=tmp_path / "worker.log"):
        for result in (low, default, high):
            result.get(timeout=60)
    assert high.date_done < default.date_done < low.date_done


def test_task_objects_get_their_routes_default_priority(celery_app_real) -> None:
    from cars_bot.broker import queue_depths
    from cars_bot.tasks import check_subscriptions_task, process_post_task, send_contact_info_task

    check_subscriptions_task.apply_async()
    process_post_task.apply_async(args=[1])
    send_contact_info_task.apply_async(args=[1, 2])
    process_post_task.apply_async(args=[2], priority=2)  # an explicit priority still wins
    depths = queue_depths(celery_app_real)
    assert depths["monitoring"].by_priority == {3: 1}
    assert list(depths["ai_processing"].by_priority.items()) == [(9, 1), (2, 1)]  # most urgent first
    assert depths["ai_processing"].ready == 2 and depths["ai_processing"].unacked == 0
    assert depths["publishing"].by_priority == {9: 1}
