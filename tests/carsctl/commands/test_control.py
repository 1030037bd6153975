"""`carsctl control`: runtime changes sent to real worker processes, their effect read back from the nodes."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from carsctl.cluster.runtime_control import TaskLimits, parse_task_info, task_limits
from tests.carsctl.cli import invoke
from tests.carsctl.ops import pid_alive

HOST = socket.gethostname()


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _start(lifecycle, name: str, *options: str) -> str:
    start = lifecycle.run("worker", "start", name, "-Q", "monitoring", *options)
    assert start.returncode == 0, start.stderr
    return f"{name}@{HOST}"


def _json(result) -> dict:
    assert "Traceback" not in result.output, result.output
    return json.loads(result.stdout)


def test_a_registered_reply_line_parses_into_the_task_limits() -> None:
    assert parse_task_info("cars_bot.x [rate_limit=10/m time_limit=90.0]") == (
        "cars_bot.x", {"rate_limit": "10/m", "time_limit": "90.0"})
    assert parse_task_info("cars_bot.y") == ("cars_bot.y", {})
    limits = task_limits({"a@h": ["cars_bot.y", "cars_bot.x [soft_time_limit=60 time_limit=90]"]}, "cars_bot.x")
    assert limits == {"a@h": TaskLimits(task="cars_bot.x", rate_limit=None, soft_time_limit_s=60.0, time_limit_s=90.0)}
    removed = task_limits({"a@h": ["cars_bot.x [rate_limit=0]"]}, "cars_bot.x")["a@h"]
    assert removed.rate_limit is None  # `rate-limit TASK 0` removes the limit


@pytest.mark.parametrize("args", [
    ("rate-limit", "process-post", "ten/m"), ("rate-limit", "process-post", "10/d"),
    ("rate-limit", "no-such-task", "10/m"), ("time-limit", "process-post", "60", "30"),
    ("time-limit", "process-post", "-5"), ("pool", "grow", "0"), ("pool", "double"),
    ("autoscale", "2", "4"), ("add-consumer", "no_such_queue"), ("cancel-consumer", "ai_proc"),
], ids=" ".join)
def test_bad_arguments_are_usage_errors_before_anything_is_sent(args) -> None:
    result = invoke("control", *args)
    assert result.exit_code == 2, result.output


@pytest.mark.redis
def test_no_worker_running_is_exit_69(celery_app_real, settings) -> None:
    result = invoke("control", "rate-limit", "process-post", "10/m", "--timeout", "5")
    assert result.exit_code == 69 and "no worker is running" in result.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_limits_pool_and_consumers_change_and_the_nodes_report_it(lifecycle) -> None:
    node = _start(lifecycle, _name("ctl"), "--pool", "prefork", "-c", "1")

    rate = _json(lifecycle.invoke("control", "rate-limit", "process-post", "10/m", "--json"))
    rows = [(n["worker"], n["outcome"], n["effect"]["rate_limit"]) for n in rate["nodes"]]
    assert rows == [(node, "changed", "10/m")]
    limits = _json(lifecycle.invoke("control", "time-limit", "process-post", "60", "90", "-d", node, "--json"))
    effect = limits["nodes"][0]["effect"]
    assert (effect["soft_time_limit_s"], effect["time_limit_s"], effect["rate_limit"]) == (60.0, 90.0, "10/m")

    grown = _json(lifecycle.invoke("control", "pool", "grow", "1", "--json", "--timeout", "5"))
    assert grown["nodes"][0]["effect"] == {"before": 1, "now": 2}  # pool processes counted by the node
    shrunk = _json(lifecycle.invoke("control", "pool", "shrink", "1", "--json", "--timeout", "5"))
    assert shrunk["nodes"][0]["effect"] == {"before": 2, "now": 1}

    added = lifecycle.invoke("control", "add-consumer", "publishing", "-d", node)
    assert added.exit_code == 0 and "monitoring, publishing" in added.stdout
    cancelled = _json(lifecycle.invoke("control", "cancel-consumer", "monitoring", "--json"))
    assert cancelled["nodes"][0]["effect"] == {"queues": ["publishing"]}

    unknown = lifecycle.invoke("control", "add-consumer", "default", "-d", "nobody")
    assert unknown.exit_code == 69
    assert unknown.stderr.count("did not reply") == 1 and f"nodes that answer: {node}" in unknown.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_a_node_that_refuses_is_shown_with_its_reason_and_exit_1(lifecycle) -> None:
    scaled = _start(lifecycle, _name("auto"), "--pool", "prefork", "--autoscale", "3,1")
    fixed = _start(lifecycle, _name("solo"), "--pool", "solo", "-c", "1")

    result = lifecycle.invoke("control", "autoscale", "4", "2")
    assert result.exit_code == 1 and "1 node refused: Autoscale not enabled" in result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if "@" in line}
    assert "changed" in rows[scaled] and "max 4, min 2" in rows[scaled]
    assert "refused: Autoscale not enabled" in rows[fixed]
    solo = lifecycle.invoke("control", "pool", "grow", "1", "-d", fixed)
    assert solo.exit_code == 1 and "cannot be resized" in solo.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_shutdown_asks_first_and_then_stops_the_node(lifecycle) -> None:
    name = _name("down")
    node = _start(lifecycle, name, "--pool", "solo", "-c", "1")
    pid = lifecycle.state(name)["pid"]

    refused = lifecycle.invoke("control", "shutdown", name)  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2 and "without --yes" in refused.stderr and pid_alive(pid)
    result = lifecycle.invoke("control", "shutdown", name, "--yes", "--timeout", "30")
    assert result.exit_code == 0 and f"{node} shut down" in result.stderr
    assert not pid_alive(pid)
    status = lifecycle.run("worker", "status", name, "--json")
    assert "crash" not in status.stdout and lifecycle.state(name) is None  # stopped, not crashed

