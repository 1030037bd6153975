"""`carsctl status`: one screen, honest about what is down, and a non-zero exit when it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.carsctl.cli import invoke, run_carsctl

pytestmark = pytest.mark.redis


def heartbeat(redis_client, age_s: float) -> None:
    from cars_bot.beat import HEARTBEAT_KEY

    tick = datetime.now(UTC) - timedelta(seconds=age_s)
    redis_client.set(HEARTBEAT_KEY, json.dumps({
        "pid": 4242, "hostname": "beat-host", "tick_at": tick.isoformat(), "max_interval": 10,
        "entries": {"collect-stats-every-15-minutes": {
            "task": "cars_bot.tasks.monitoring_tasks.collect_stats_task",
            "last_run_at": (tick - timedelta(minutes=5)).isoformat(),
            "next_run_at": (tick + timedelta(minutes=10)).isoformat()}}}))


def test_nothing_running_nothing_wrong(celery_app_real, redis_client, db, settings) -> None:
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["broker"]["reachable"] and report["database"] == {**report["database"], "reachable": True,
                                                                     "failed_tasks": 0}
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


def test_failed_tasks_and_beat_heartbeat(celery_app_real, redis_client, db, settings) -> None:
    from cars_bot.db.models import FailedTask

    with db() as session:
        session.add(FailedTask(task_id="t1", task_name="x", args=[], kwargs={}, queue="default", exception="E"))
        session.commit()
    heartbeat(redis_client, age_s=3)
    report = json.loads(invoke("status", "--json").stdout)
    assert report["database"]["failed_tasks"] == 1
    assert report["beat"]["state"] == "alive" and report["beat"]["host"] == "beat-host"
    heartbeat(redis_client, age_s=120)
    stale = invoke("status")
    assert stale.exit_code == 1 and "beat: alive but not ticking" in stale.stderr


def test_broker_down_exit_69_within_3_seconds() -> None:
    began = time.monotonic()
    result = run_carsctl("status", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 69 and time.monotonic() - began < 3
    assert "UNREACHABLE" in result.stdout and "Traceback" not in result.stderr


def test_watch_redraws_until_ctrl_c(celery_app_real, db, settings) -> None:
    env = {**os.environ, "CARSCTL_HOME": str(settings.home), "LOG_DIR": str(settings.log_dir)}
    process = subprocess.Popen([sys.executable, "-m", "carsctl", "status", "--watch", "0.5"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in stderr
    assert stdout.count("Services") >= 2
