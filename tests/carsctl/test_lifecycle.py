"""The lifecycle service layer: recognising our processes, stop escalation, the beat lock, specs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from carsctl.errors import UsageError
from carsctl.process import supervise
from carsctl.process.supervise import Condition, Shutdown, default_signals
from tests.carsctl.ops import pid_alive, wait_for

# A process that reports its readiness, then handles signals as told: "ignore" TERM (exit on QUIT),
# "stuck" (ignores TERM and QUIT), or "child" (spawns a child in its own process group, exits on TERM).
PROGRAM = """
import signal, subprocess, sys, time
mode = sys.argv[1]
if mode in ("ignore", "stuck"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "stuck":
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
if mode == "child":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
else:
    print(0, flush=True)
time.sleep(60)
"""


@pytest.fixture
def spawn():
    """Start helper processes; kill whatever is left at the end (by pid).

    They start with default signal dispositions: run under `trap '' QUIT`, pytest would otherwise pass
    an ignored SIGQUIT on, and the "ignore" helper would survive the cold shutdown it is there to test.
    """
    started: list[int] = []

    def start(mode: str) -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen([sys.executable, "-c", PROGRAM, mode], stdout=subprocess.PIPE, text=True,
                                   preexec_fn=default_signals)
        child = int(process.stdout.readline())  # ready: signal handlers are installed
        started.extend([process.pid, child] if child else [process.pid])
        return process, child

    yield start
    for pid in started:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


def _target(process: subprocess.Popen[str]) -> list[supervise.StopTarget]:
    return [supervise.StopTarget("helper", process.pid)]


def test_our_process_is_recognised_by_start_time_and_command_line() -> None:
    me = psutil.Process()
    marker = me.cmdline()[0]
    assert supervise.process_condition(os.getpid(), me.create_time(), []) is Condition.ALIVE
    assert supervise.process_condition(os.getpid(), me.create_time() - 100, []) is Condition.FOREIGN  # pid reused
    assert supervise.process_condition(os.getpid(), None, ["celery", "no-such-marker"]) is Condition.FOREIGN
    assert supervise.process_condition(os.getpid(), None, [marker]) is Condition.ALIVE
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert supervise.process_condition(finished.pid, None, []) is Condition.DEAD
    assert supervise.process_condition(None, None, []) is Condition.DEAD


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie")
    assert supervise.process_condition(child.pid, None, []) is Condition.DEAD


@pytest.mark.timeout(30)
def test_stop_escalates_to_a_cold_shutdown_when_term_is_ignored(spawn) -> None:
    process, _ = spawn("ignore")
    messages: list[str] = []
    outcome = supervise.stop_processes(_target(process), timeout=0.3, cold_timeout=20, force=False,
                                       progress=messages.append)
    assert outcome == {"helper": Shutdown.COLD}  # SIGQUIT ended it within the cold timeout: not still running
    assert not pid_alive(process.pid)  # (reaped by the stop's liveness check)
    assert any("cold shutdown (SIGQUIT)" in m for m in messages), messages


def test_stop_never_kills_without_force_and_kills_with_it(spawn) -> None:
    process, _ = spawn("stuck")
    messages: list[str] = []
    outcome = supervise.stop_processes(_target(process), timeout=0.2, cold_timeout=0.2, force=False,
                                       progress=messages.append)
    assert outcome == {"helper": Shutdown.STILL_RUNNING}
    assert process.poll() is None  # nothing was killed
    assert any("cold shutdown" in m for m in messages)
    outcome = supervise.stop_processes(_target(process), timeout=0.2, cold_timeout=0.2, force=True)
    assert outcome == {"helper": Shutdown.KILLED}
    assert not pid_alive(process.pid)


def test_stop_signals_the_main_process_only_never_its_group(spawn) -> None:
    process, child = spawn("child")
    assert os.getpgid(child) == os.getpgid(process.pid)  # same process group
    outcome = supervise.stop_processes(_target(process), timeout=5, cold_timeout=1, force=False)
    assert outcome == {"helper": Shutdown.WARM}
    assert pid_alive(child)  # a killpg would have taken it (celery#2700)


def test_stop_reports_what_is_still_running(spawn, monkeypatch) -> None:
    monkeypatch.setattr(supervise, "PROGRESS_EVERY", 0.1)
    process, _ = spawn("ignore")
    messages: list[str] = []
    supervise.stop_processes([supervise.StopTarget("ai@host", process.pid, "1 task running: t[abc]")],
                             timeout=0.5, cold_timeout=5, force=False, progress=messages.append)
    assert any("still running" in m and "ai@host" in m and "1 task running" in m for m in messages), messages


def test_log_tail_and_watcher_read_only_this_run(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("old run ready.\n")
    offset = log.stat().st_size
    watcher = supervise.LogWatcher(log, offset)
    assert not watcher.saw(b"ready.")
    with open(log, "a") as handle:
        handle.write("booting\nx@h ready.\n")
    assert watcher.saw(b"x@h ready.")
    assert supervise.log_tail(log, offset) == ["booting", "x@h ready."]
    assert supervise.log_tail(tmp_path / "missing.log") == []


# --- specs ----------------------------------------------------------------------------------------
def test_worker_spec_defaults_remembered_options_and_validation(settings) -> None:
    from carsctl.lifecycle.node_specs import worker_command, worker_spec
    from carsctl.process.nodes import forget_node, save_node

    spec = worker_spec(settings, "worker")
    assert spec.queues == ["default", "ai_processing", "publishing", "sheets_sync", "monitoring"]
    assert (spec.concurrency, spec.pool, spec.loglevel) == (4, "prefork", "info")
    assert spec.logfile == str(settings.log_dir / "celery_worker.log")
    assert spec.pidfile == str(settings.home / "run" / "worker.pid")
    ai = worker_spec(settings, "ai@somehost", queues=["ai_processing"], concurrency=2, pool="solo")
    assert ai.name == "ai" and ai.logfile.endswith("celery_worker-ai.log")
    save_node(settings, ai)
    forget_node(settings, ai, "2026-01-01T00:00:00+00:00")
    again = worker_spec(settings, "ai", loglevel="WARNING")
    assert (again.queues, again.concurrency, again.pool, again.loglevel) == (["ai_processing"], 2, "solo", "warning")
    command = worker_command(again)
    assert command[:6] == [sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "worker"]
    assert ["-Q", "ai_processing"] == command[command.index("-Q"):command.index("-Q") + 2]
    for bad in ({"queues": ["nope"]}, {"pool": "gevent"}, {"autoscale": "1,5"}, {"loglevel": "loud"}):
        with pytest.raises(UsageError):
            worker_spec(settings, "x", **bad)
    for name in ("beat", "flower", "-x", "a b"):
        with pytest.raises(UsageError):
            worker_spec(settings, name)
    assert worker_spec(settings, "auto", autoscale="8").autoscale == "8,0"


def test_node_layout_specs() -> None:
    from carsctl.lifecycle.node_specs import NodeLayout, parse_node_layout

    assert parse_node_layout(["ai:ai_processing:2", "main:default,publishing", "solo"]) == [
        NodeLayout("ai", ("ai_processing",), 2),
        NodeLayout("main", ("default", "publishing")),
        NodeLayout("solo"),
    ]
    for bad in ("", "a:b:c:d", "a:default:zero"):
        with pytest.raises(UsageError):
            parse_node_layout([bad])


# --- the beat lock and heartbeat ---------------------------------------------------------------------
def _scheduler(tmp_path: Path, name: str):
    from cars_bot.beat import LockedScheduler
    from cars_bot.celery_app import app

    return LockedScheduler(app=app, schedule_filename=str(tmp_path / name))


def test_locked_scheduler_holds_the_lock_and_writes_a_heartbeat(tmp_path, redis_client) -> None:
    from cars_bot.beat import HEARTBEAT_KEY, LOCK_KEY, BeatLockHeld, lock_holder, read_heartbeat

    first = _scheduler(tmp_path, "one")
    try:
        holder = lock_holder(redis_client)
        assert holder is not None and holder.pid == os.getpid() and holder.token
        assert 0 < redis_client.pttl(LOCK_KEY) <= 60_000
        first.tick()
        heartbeat = read_heartbeat(redis_client)
        assert heartbeat is not None and heartbeat.pid == os.getpid() and heartbeat.max_interval <= 10
        assert 0 < redis_client.ttl(HEARTBEAT_KEY) <= 180
        entries = heartbeat.entries
        assert entries["sync-channels-every-minute"].task == "cars_bot.tasks.sheets_tasks.sync_channels_task"
        assert entries["sync-channels-every-minute"].last_run_at is None
        assert entries["check-subscriptions-daily"].next_run_at.endswith("00:00:00+00:00")
        with pytest.raises(BeatLockHeld):  # a second beat, with another schedule file (another directory)
            _scheduler(tmp_path, "two")
        assert not (tmp_path / "two").exists() and not list(tmp_path.glob("two*"))
    finally:
        first.close()
    assert redis_client.get(LOCK_KEY) is None and redis_client.get(HEARTBEAT_KEY) is None


def test_a_dead_local_holder_is_taken_over_a_live_remote_one_is_not(tmp_path, redis_client) -> None:
    from cars_bot.beat import LOCK_KEY, BeatLockHeld, LockHolder, lock_holder, machine_id

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    import socket

    dead = {"token": "t", "pid": finished.pid, "hostname": socket.gethostname(), "machine": machine_id(),
            "acquired_at": None}
    redis_client.set(LOCK_KEY, json.dumps(dead, sort_keys=True), px=60_000)
    scheduler = _scheduler(tmp_path, "s")
    assert lock_holder(redis_client).pid == os.getpid()
    scheduler.close()
    # Another host; the same hostname in another container (another pid namespace); a holder that does
    # not say which machine it runs on: none of their pids means anything here, so they keep the lock.
    for other in ({**dead, "hostname": "another-host", "machine": "another-host/boot/pid:[1]", "pid": 1},
                  {**dead, "machine": socket.gethostname() + "/boot/pid:[4026532999]"},
                  {key: value for key, value in dead.items() if key != "machine"}):
        redis_client.set(LOCK_KEY, json.dumps(other, sort_keys=True), px=60_000)
        with pytest.raises(BeatLockHeld):
            _scheduler(tmp_path, "s2")
        assert lock_holder(redis_client) == LockHolder(**other)


def test_a_beat_whose_lock_was_taken_stops_before_sending(tmp_path, redis_client) -> None:
    from cars_bot.beat import LOCK_KEY, BeatLockLost

    scheduler = _scheduler(tmp_path, "s")
    sent = []
    scheduler.apply_entry = lambda entry, producer=None: sent.append(entry.name)
    for entry in scheduler.schedule.values():  # everything is due: a paused beat's first tick sends
        entry.last_run_at = entry.last_run_at - timedelta(days=2)
    scheduler.populate_heap()
    try:
        redis_client.set(LOCK_KEY, json.dumps({"token": "other", "pid": 1, "hostname": "elsewhere"}))
        with pytest.raises(BeatLockLost):
            scheduler.tick()
        assert sent == []
        with pytest.raises(BeatLockLost):  # and never sends again
            scheduler.tick()
    finally:
        with pytest.raises(BeatLockLost) as closed:  # close() re-raises: Celery swallows tick()'s SystemExit
            scheduler.close()
    assert closed.value.code == 1 and sent == []
    assert json.loads(redis_client.get(LOCK_KEY))["token"] == "other"  # not released: not ours
