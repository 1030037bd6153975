"""`carsctl inspect` and the operations commands' surface: no-worker answers, help, imports, rendering."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.carsctl.cli import invoke

OPS_COMMANDS = [
    ("status",), ("queues",), ("purge",), ("schedule",), ("logs",), ("doctor",),
    *(("inspect", what) for what in ("active", "reserved", "scheduled", "stats", "registered", "revoked",
                                      "queues", "ping")),
    *(("task", what) for what in ("list", "run", "result", "revoke", "failed", "retry")),
    *(("control", what) for what in ("rate-limit", "time-limit", "pool", "autoscale", "add-consumer",
                                     "cancel-consumer", "shutdown")),
    ("events",),
]


@pytest.mark.redis
def test_no_worker_running_is_exit_69_without_waiting(celery_app_real, settings) -> None:
    from carsctl.cluster.remote_control import StopReason, inspect

    outcome = inspect(celery_app_real, "active", timeout=5.0, settings=settings)
    # nobody received the broadcast, so no reply was waited for (not the 5 s timeout)
    assert outcome.listeners == 0 and outcome.stopped_because == StopReason.NOBODY_LISTENS and outcome.replies == {}
    result = invoke("inspect", "active", "--timeout", "5")
    assert result.exit_code == 69
    assert "no worker is running (none listens for remote control)" in result.stderr


def test_unknown_inspect_command_is_a_usage_error() -> None:
    result = invoke("inspect", "everything")
    assert result.exit_code == 2


@pytest.mark.parametrize("command", OPS_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Example: carsctl " in result.stdout


def test_help_of_the_operations_commands_imports_nothing_heavy() -> None:
    argvs = [[*command, "--help"] for command in OPS_COMMANDS]
    code = (
        "import sys\nfrom carsctl.app import app\n"
        f"for argv in {argvs!r}:\n"
        "    try:\n        app(argv, prog_name='carsctl')\n    except SystemExit:\n        pass\n"
        "heavy = ('celery', 'kombu', 'redis', 'sqlalchemy', 'psutil', 'openai', 'telethon', 'gspread')\n"
        "print('HEAVY=' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.rstrip().splitlines()[-1] == "HEAVY=", out[-500:]


def test_task_table_shows_arguments_as_data_not_markup() -> None:
    from rich.console import Console

    from carsctl.cluster.remote_control import TaskRow
    from carsctl.render import task_table

    row = TaskRow(worker="w1@host", name="cars_bot.tasks.ai_tasks.classify_post_task", alias="classify-post",
                  id="3f1c0c2e-5b7a-4e0e-9a53-0a4c3c7d9b11", args=["[red]Продаю[/red] BMW"], kwargs={},
                  started_at=None, runtime_s=75.2, eta=None, priority=9, queue="ai_processing", worker_pid=None,
                  acknowledged=True)
    console = Console(width=160, record=True, no_color=True)
    console.print(task_table("Active tasks", [row], kind="active"))
    text = console.export_text()
    assert '"[red]Продаю[/red] BMW"' in text and "1m15s" in text and row.id in text


def test_durations_limits_and_arguments_read_well() -> None:
    from carsctl.render import call_args, duration, limit, plural

    assert [duration(s) for s in (0.42, 12, 185, 7380)] == ["0.4s", "12s", "3m05s", "2h03m"]
    assert [limit(s) for s in (90, 150, 300, 3600)] == ["90s", "2m30s", "5m", "1h"]
    assert call_args([42, "x"], {"days_old": 7}) == '42, "x", days_old=7'
    assert call_args(["a" * 100], None, width=10).endswith("…") and len(call_args(["a" * 100], None, width=10)) == 10
    assert plural(1, "queue") == "1 queue" and plural(3, "queue") == "3 queues"


@pytest.mark.redis
@pytest.mark.slow
def test_scheduled_shows_each_message_priority_and_agrees_with_revoke_and_purge(celery_app_real, redis_client,
                                                                                 settings, tmp_path) -> None:
    import json
    import time

    from tests.workers import celery_worker

    cleanup = "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task"
    app = celery_app_real
    with celery_worker(app, queues="monitoring", log=tmp_path / "worker.log") as (_process, node):
        sent = {app.send_task(cleanup, queue="monitoring", countdown=600, priority=p).id: p for p in (2, 8, 5)}
        deadline = time.monotonic() + 15
        rows: list = []
        while len(rows) < 3 and time.monotonic() < deadline:  # the worker takes them from the queue
            rows = json.loads(invoke("inspect", "scheduled", "--json").stdout)["rows"]
        assert {row["id"]: row["priority"] for row in rows} == sent  # not the worker's timer priority (6)

        revoked = next(iter(sent))
        app.control.revoke(revoked)
        after_revoke = json.loads(invoke("inspect", "scheduled", "--json").stdout)["rows"]
        assert sorted(row["id"] for row in after_revoke) == sorted(set(sent) - {revoked})

        assert invoke("purge", "-Q", "monitoring", "--yes", "--include-unacked").exit_code == 0
        (queue,) = json.loads(invoke("queues", "-Q", "monitoring", "--json").stdout)["queues"]
        assert (queue["unacked"], queue["scheduled"]) == (0, 0)  # not "Unacked 0, of which ETA 2"
        assert "no scheduled tasks" in invoke("inspect", "scheduled").stderr

        unknown = invoke("inspect", "ping", "-d", "ai@nosuchhost")
    assert unknown.exit_code == 69
    assert unknown.stderr.count("ai@nosuchhost did not reply") == 1  # said once, not as a warning and an error
    assert f"nodes that answer: {node}" in unknown.stderr and "carsctl worker start" not in unknown.stderr
