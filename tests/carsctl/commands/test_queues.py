"""`carsctl queues`: every priority sub-list counted, plus what workers hold; errors in one line."""

from __future__ import annotations

import json

import pytest

from tests.carsctl.cli import invoke, run_carsctl

pytestmark = pytest.mark.redis

PROCESS_POST = "cars_bot.tasks.ai_tasks.process_post_task"


def send_at(app, priorities, queue="ai_processing") -> None:
    for number, priority in enumerate(priorities):
        app.send_task(PROCESS_POST, args=[number], queue=queue, priority=priority)


def test_depth_counts_every_priority_level(celery_app_real, redis_client, settings) -> None:
    send_at(celery_app_real, [0, 3, 5, 9, 9, 10])
    assert redis_client.llen("ai_processing") == 3  # what a bare LLEN sees: half of them
    result = invoke("queues", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["queue"]: row for row in json.loads(result.stdout)["queues"]}
    assert rows["ai_processing"]["ready"] == 6
    assert rows["ai_processing"]["by_priority"] == {"9": 3, "5": 1, "3": 1, "0": 1}
    assert rows["default"]["ready"] == 0 and set(rows) == {"default", "ai_processing", "publishing",
                                                           "sheets_sync", "monitoring"}
    table = invoke("queues", "-Q", "ai_processing")
    assert table.exit_code == 0 and "p9:3 p5:1 p3:1 p0:1" in table.stdout
    assert "no worker replied" in table.stderr


def test_unknown_queue_is_a_usage_error_with_the_closest_name(celery_app_real, settings) -> None:
    result = invoke("queues", "-Q", "ai_procesing")
    assert result.exit_code == 2 and "unknown queue 'ai_procesing'" in result.stderr
    assert "did you mean ai_processing" in result.stderr


GOOD_ID = "0a1b2c3d-0000-4000-8000-000000000001"  # a well-formed task id: the broker is asked


@pytest.mark.parametrize("command", [("queues",), ("purge", "--yes"), ("inspect", "active"), ("schedule",),
                                     ("task", "run", "process-post", "1"), ("task", "revoke", GOOD_ID),
                                     ("task", "result", GOOD_ID)], ids=" ".join)
@pytest.mark.timeout(30)  # a hang guard: kombu's own retries against a dead broker last minutes
def test_broker_down_is_one_line_and_exit_69(command) -> None:
    result = run_carsctl(*command, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 69, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("carsctl: error: broker unreachable at redis://127.0.0.1:1/0: ")
    assert "carsctl broker status" in result.stderr  # the hint
