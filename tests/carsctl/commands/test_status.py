"""`carsctl status`: one screen, honest about what is down, and a non-zero exit when it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.carsctl.cli import invoke, run_carsctl

pytestmark = pytest.mark.redis

#: the keys of `status --json` that scripts read
STATUS_KEYS = {"checked_at", "broker", "database", "nodes", "queues", "beat", "monitor", "problems", "exit_code",
               "elapsed_ms", "queue_consumers", "unconsumed"}


def test_nothing_running_nothing_wrong(celery_app_real, redis_client, db, settings) -> None:
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == STATUS_KEYS and report["exit_code"] == 0
    assert report["broker"]["reachable"] and report["broker"]["kind"] == "redis"
    assert report["database"]["reachable"] and report["database"]["failed_tasks"] == 0
    assert report["nodes"] == [] and report["monitor"]["state"] == "not configured"
    assert report["beat"]["state"] == "not seen" and report["problems"] == []
    assert {q["queue"] for q in report["queues"]} >= {"ai_processing", "monitoring"}
    screen = invoke("status")
    assert "Workers: none running" in screen.stdout and "not configured" in screen.stdout


def test_a_node_carsctl_started_that_is_gone_fails_the_status(celery_app_real, redis_client, db, settings) -> None:
    from carsctl.process.nodes import NodeState, save_node

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    save_node(settings, NodeState(name="ai", hostname=f"ai@{os.uname().nodename}", pid=gone.pid))
    result = invoke("status")
    assert result.exit_code == 1
    assert f"problem: worker ai@{os.uname().nodename}: not running" in result.stderr


def test_failed_tasks_and_beat_heartbeat(celery_app_real, redis_client, db, settings, beat_heartbeat) -> None:
    from cars_bot.db.models import FailedTask

    with db() as session:
        session.add(FailedTask(task_id="t1", task_name="x", args=[], kwargs={}, queue="default", exception="E"))
        session.commit()
    beat_heartbeat(3)
    report = json.loads(invoke("status", "--json").stdout)
    assert report["database"]["failed_tasks"] == 1
    assert report["beat"]["state"] == "alive" and report["beat"]["host"] == "beat-host"
    beat_heartbeat(120)
    stale = invoke("status")
    assert stale.exit_code == 1 and "beat: alive but not ticking" in stale.stderr


def test_broker_down_exit_69_and_nothing_asked_of_it(settings) -> None:
    down = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    result = run_carsctl("status", env=down)
    assert result.returncode == 69 and "Traceback" not in result.stderr
    assert "UNREACHABLE: broker unreachable at redis://127.0.0.1:1/0" in result.stdout
    assert "problem: broker: broker unreachable at redis://127.0.0.1:1/0" in result.stderr
    report = json.loads(invoke("status", "--json", env=down).stdout)
    assert report["exit_code"] == 69 and report["broker"]["reachable"] is False
    # the broker-side parts are skipped, not attempted one by one against a dead broker
    assert report["queues"] == [] and report["beat"]["state"] == "unknown" and report["nodes"] == []


def test_watch_redraws_until_ctrl_c(celery_app_real, db, carsctl_process) -> None:
    watched = carsctl_process("status", "--watch", "0.5")
    watched.wait_for(lambda lines: sum("Services" in line for line in lines) >= 2)
    code, _stdout, stderr = watched.interrupt()
    assert code == 0 and "Traceback" not in stderr


def test_a_queue_with_messages_and_no_consumer_is_marked_and_fails(celery_app_real, redis_client, db, settings) -> None:
    from cars_bot.task_names import PROCESS_POST

    for post_id in (1, 2, 3):
        celery_app_real.send_task(PROCESS_POST, args=[post_id], queue="ai_processing")
    result = invoke("status", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["exit_code"] == 1
    assert [(q["queue"], q["ready"]) for q in report["unconsumed"]] == [("ai_processing", 3)]
    assert report["unconsumed"][0]["fix"] == "carsctl worker start ai -Q ai_processing"
    assert "queue ai_processing: 3 message(s) waiting and no worker consumes it" in result.stderr
    screen = invoke("status")
    rows = [[cell.strip() for cell in line.split("│")] for line in screen.stdout.splitlines()]
    assert ["ai_processing", "3", "p9:3", "0", "NONE"] in rows, screen.stdout


@pytest.mark.slow
def test_a_killed_node_is_shown_crashed_in_worker_status_and_status(lifecycle) -> None:
    import signal
    import socket
    import uuid

    from tests.carsctl.ops import pid_alive, wait_for

    name = f"dies{uuid.uuid4().hex[:6]}"
    start = lifecycle.run("worker", "start", name, "-Q", "monitoring", "--pool", "solo", "-c", "1")
    assert start.returncode == 0, start.stderr
    node = f"{name}@{socket.gethostname()}"
    pid = lifecycle.state(name)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10, "the worker to die")

    worker = lifecycle.run("worker", "status", name, "--json")
    (row,) = json.loads(worker.stdout)  # exit 5, as a stale pidfile was before: probes keep working
    assert worker.returncode == 5 and row["status"] == "crashed"
    assert "killed without logging a shutdown" in row["note"]
    overview = lifecycle.invoke("status")
    assert overview.exit_code == 1
    assert f"problem: worker {node}: crashed: killed without logging a shutdown" in overview.stderr
    assert f"{node} crashed: killed" in overview.stdout
