"""`carsctl beat`: one beat per broker (a Redis lock), a heartbeat, honest status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psutil
import pytest

from carsctl.process.nodes import NodeState, pidfile_path, save_node
from tests.carsctl.ops import pid_alive, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_one_beat_per_broker_with_heartbeat_and_schedule(lifecycle, redis_client, tmp_path) -> None:
    from cars_bot.beat import HEARTBEAT_KEY, LOCK_KEY, read_heartbeat

    start = lifecycle.run("beat", "start", "--json")
    assert start.returncode == 0, start.stderr
    pid = json.loads(start.stdout)[0]["pid"]
    assert read_heartbeat(redis_client).pid == pid  # ready means: it ticked
    assert (lifecycle.logs / "celery_beat.log").exists()

    status = lifecycle.run("beat", "status", "--json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)
    assert row["status"] == "running" and row["lock_holder"]["pid"] == pid
    assert len(row["entries"]) == 7
    assert all(entry["next_run_at"] for entry in row["entries"].values())
    table = lifecycle.run("beat", "status")
    assert "collect-stats-every-15-minutes" in table.stdout and "next run" in table.stdout

    assert "already running" in lifecycle.run("beat", "start").stderr  # same home: idempotent
    other_home = {"CARSCTL_HOME": str(tmp_path / "elsewhere"), "LOG_DIR": str(tmp_path / "elsewhere-logs")}
    second = lifecycle.run("beat", "start", env=other_home)  # another directory, same broker
    assert second.returncode == 1 and "another beat runs against this broker" in second.stderr
    assert not (tmp_path / "elsewhere" / "nodes" / "beat.json").exists()

    # even a plain `celery beat`, bypassing carsctl, refuses: the lock is in the scheduler itself
    plain_log = tmp_path / "plain-beat.log"
    plain = subprocess.run([sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "beat", "-s",
                            str(tmp_path / "plain-schedule"), "--logfile", str(plain_log)],
                           env={**lifecycle.env, **other_home}, capture_output=True, timeout=60)
    assert plain.returncode != 0
    assert "another beat holds cars_bot:beat:lock" in plain_log.read_text()
    assert read_heartbeat(redis_client).pid == pid  # the first one is untouched

    stop = lifecycle.run("beat", "stop")
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(pid)
    assert redis_client.get(LOCK_KEY) is None and redis_client.get(HEARTBEAT_KEY) is None
    assert lifecycle.run("beat", "status").returncode == 3


def test_beat_not_ticking_killed_and_stale(lifecycle, redis_client) -> None:
    from cars_bot.beat import HEARTBEAT_KEY, lock_holder, read_heartbeat

    assert lifecycle.run("beat", "start").returncode == 0
    pid = lifecycle.state("beat")["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive but silent: its heartbeat gets old
    try:
        old_tick = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
        heartbeat = replace(read_heartbeat(redis_client), tick_at=old_tick)
        redis_client.set(HEARTBEAT_KEY, heartbeat.to_json(), ex=180)
        silent = lifecycle.run("beat", "status", "--json")
        assert silent.returncode == 4 and "last tick" in json.loads(silent.stdout)["note"]
    finally:
        os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGKILL)  # a crash: pidfile and lock are left behind
    wait_for(lambda: not pid_alive(pid), 10, "beat to die")
    assert lock_holder(redis_client).pid == pid
    crashed = lifecycle.run("beat", "status", "--json")
    assert crashed.returncode == 5 and "dead" in json.loads(crashed.stdout)["note"]
    # takes over at once: the holder is dead on this host (a lock still counted as held would make it
    # refuse, and waiting for it to expire, 60 s, would outlast this start's timeout)
    again = lifecycle.run("beat", "start", "--timeout", "30", "--json")
    assert again.returncode == 0, again.stderr
    assert "removed stale" in again.stderr
    new_pid = json.loads(again.stdout)[0]["pid"]
    assert lock_holder(redis_client).pid == new_pid != pid
    assert lifecycle.run("beat", "stop").returncode == 0


def test_beat_pidfile_pointing_at_a_foreign_process_is_stale(lifecycle) -> None:
    settings = lifecycle.settings()
    pidfile = pidfile_path(settings, "beat")
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(f"{os.getpid()}\n")
    save_node(settings, NodeState(name="beat", hostname="beat@x", kind="beat", pid=os.getpid(),
                                  create_time=psutil.Process().create_time(), pidfile=str(pidfile)))
    status = lifecycle.invoke("beat", "status", "--json")
    assert status.exit_code == 5 and "not ours" in json.loads(status.stdout)["note"]
    stop = lifecycle.invoke("beat", "stop")
    assert stop.exit_code == 0 and "stale pidfile (removed, nothing signalled)" in stop.stderr
    assert not pidfile.exists()
