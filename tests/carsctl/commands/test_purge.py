"""`carsctl purge`: every priority sub-list, the unacked messages of a killed worker, and no silent purges."""

from __future__ import annotations

import json
import time

import pytest

from tests.carsctl.cli import invoke
from tests.carsctl.ops import queued, unacked
from tests.workers import celery_worker

pytestmark = pytest.mark.redis

PROCESS_POST = "cars_bot.tasks.ai_tasks.process_post_task"
CLEANUP = "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task"


def send_at(app, priorities, queue="ai_processing") -> None:
    for number, priority in enumerate(priorities):
        app.send_task(PROCESS_POST, args=[number], queue=queue, priority=priority)


def test_purge_refuses_without_yes_when_stdin_is_not_a_terminal(celery_app_real, redis_client, settings) -> None:
    send_at(celery_app_real, [1, 9])
    result = invoke("purge")
    assert result.exit_code == 2
    assert "refusing to purge without --yes" in result.stderr and "Traceback" not in result.output
    assert sum(len(messages) for messages in queued(redis_client, "ai_processing").values()) == 2


def test_purge_empties_every_priority_level_and_only_the_chosen_queues(celery_app_real, redis_client,
                                                                       settings) -> None:
    send_at(celery_app_real, [0, 2, 5, 7, 9])
    send_at(celery_app_real, [3], queue="sheets_sync")
    plan_and_purge = invoke("purge", "-Q", "ai_processing", "--yes")
    assert plan_and_purge.exit_code == 0, plan_and_purge.output
    assert "p9:1 p7:1 p5:1 p2:1 p0:1" in plan_and_purge.stderr  # the plan, before anything is deleted
    assert "Purged 5 messages from 1 queue" in plan_and_purge.stderr
    assert queued(redis_client, "ai_processing") == {}
    assert len(queued(redis_client, "sheets_sync")["sheets_sync:6"]) == 1
    everything = invoke("purge", "--yes", "--json")
    assert json.loads(everything.stdout)["purged"]["sheets_sync"] == 1


@pytest.mark.slow
def test_unacked_messages_of_a_killed_worker_are_counted_and_purged_on_request(celery_app_real, redis_client,
                                                                               settings, tmp_path) -> None:
    app = celery_app_real
    with celery_worker(app, queues="monitoring", log=tmp_path / "worker.log") as (process, _node):
        for _ in range(3):  # ETA tasks: the worker takes them and holds them, unacknowledged, until due
            app.send_task(CLEANUP, queue="monitoring", countdown=600)
        deadline = time.monotonic() + 15
        while len(unacked(redis_client)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()  # no warm shutdown: the messages stay in the unacked hash
        process.wait(timeout=10)
    assert [routing_key for routing_key, _ in unacked(redis_client)] == ["monitoring"] * 3
    depth = json.loads(invoke("queues", "-Q", "monitoring", "--json").stdout)
    assert depth["queues"][0]["unacked"] == 3 and depth["queues"][0]["ready"] == 0
    assert depth["queues"][0]["scheduled"] == 0  # nobody holds them any more: nobody answers

    broker_only = invoke("purge", "-Q", "monitoring", "--yes")
    assert broker_only.exit_code == 0
    assert "3 message(s) held unacknowledged" in broker_only.stderr and "--include-unacked" in broker_only.stderr
    assert len(unacked(redis_client)) == 3

    everything = invoke("purge", "-Q", "monitoring", "--yes", "--include-unacked")
    assert everything.exit_code == 0, everything.output
    assert "Purged 3 messages from 1 queue (3 of them unacknowledged)" in everything.stderr
    assert unacked(redis_client) == [] and redis_client.zcard("unacked_index") == 0
