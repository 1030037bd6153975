"""`carsctl worker`: real `celery worker` processes started, checked and stopped by carsctl.

Every test has its own CARSCTL_HOME/LOG_DIR (the `lifecycle` fixture), runs carsctl as a subprocess
for process management, and stops whatever it started by pid, even when it fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import psutil
import pytest

from carsctl.process.nodes import NodeState, pidfile_path, save_node
from carsctl.process.supervise import default_signals
from tests.carsctl.ops import SLEEP_TASK, TASKS_MODULE, pid_alive, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]
HOST = socket.gethostname()
LIGHT = ("--pool", "solo", "-c", "1")  # one process per node keeps the suite fast


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _app():
    from cars_bot.celery_app import app

    return app


def _ping(*hostnames: str) -> set[str]:
    app = _app()
    with app.connection_for_write() as connection:
        replies = app.control.ping(destination=list(hostnames), timeout=2, connection=connection) or []
    return {name for reply in replies for name in reply}


def _depth(queue: str = "default") -> int:
    """Messages of `queue` still in the broker: waiting (any priority) or held unacknowledged."""
    from cars_bot.broker import queue_depths

    depth = queue_depths(_app(), [queue])[queue]
    return depth.ready + depth.unacked


def _send_sleep(lifecycle, seconds: float, **options):
    marker = str(lifecycle.tmp / f"task-{uuid.uuid4().hex[:6]}")
    result = _app().send_task(SLEEP_TASK, args=[seconds, marker], kwargs=options, queue="default")
    return result, marker


def test_two_nodes_with_different_queues_both_answer(lifecycle) -> None:
    a, b = _name("a"), _name("b")
    starts = [lifecycle.popen("worker", "start", a, "-Q", "default", *LIGHT, "--json"),
              lifecycle.popen("worker", "start", b, "-Q", "ai_processing,monitoring", *LIGHT, "--json"),
              lifecycle.popen("worker", "start", a, "-Q", "default", *LIGHT, "--json")]  # a race on `a`
    outputs = [process.communicate(timeout=90) for process in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    results = [r for out, _err in outputs for r in json.loads(out)]
    assert sorted(r["state"] for r in results if r["name"] == a) == ["already-running", "started"]
    assert len({r["pid"] for r in results if r["name"] == a}) == 1  # one process: the loser waited
    started = {r["name"]: r for r in results if r["state"] == "started"}
    assert started[b]["state"] == "started"
    assert started[a]["logfile"] == str(lifecycle.logs / f"celery_worker-{a}.log")
    assert any(f"{a}@{HOST} started: pid {started[a]['pid']}" in err for _out, err in outputs)
    assert _ping(f"{a}@{HOST}", f"{b}@{HOST}") == {f"{a}@{HOST}", f"{b}@{HOST}"}
    app = _app()
    with app.connection_for_write() as connection:
        queues = app.control.inspect(destination=[f"{a}@{HOST}", f"{b}@{HOST}"], timeout=2,
                                     connection=connection).active_queues()
    assert sorted(q["name"] for q in queues[f"{a}@{HOST}"]) == ["default"]
    assert sorted(q["name"] for q in queues[f"{b}@{HOST}"]) == ["ai_processing", "monitoring"]

    # detached (own session: closing the terminal sends no SIGHUP), same environment, no secrets in argv
    pid = started[a]["pid"]
    assert os.getsid(pid) == pid
    process = psutil.Process(pid)
    assert process.environ()["REDIS_URL"] == os.environ["REDIS_URL"]
    assert (lifecycle.home / "run" / f"{a}.pid").read_text().strip() == str(pid)  # no double fork
    assert "REDIS_URL" not in " ".join(process.cmdline())

    again = lifecycle.run("worker", "start", a, "-Q", "monitoring")  # idempotent: nothing changes
    assert again.returncode == 0 and "already running" in again.stderr
    assert lifecycle.state(a)["pid"] == pid and lifecycle.state(a)["queues"] == ["default"]

    status = lifecycle.run("worker", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert {rows[a]["status"], rows[b]["status"]} == {"running"}
    assert rows[b]["queues"] == ["ai_processing", "monitoring"] and rows[b]["pool"] == "solo"

    os.kill(started[b]["pid"], signal.SIGSTOP)  # alive, but deaf
    try:
        deaf = lifecycle.run("worker", "status", b, "--timeout", "0.5", "--json")
        assert deaf.returncode == 4 and json.loads(deaf.stdout)[0]["status"] == "not-responding"
        assert lifecycle.run("worker", "status", "--timeout", "0.5").returncode == 4  # the worst of the nodes
    finally:
        os.kill(started[b]["pid"], signal.SIGCONT)

    stop = lifecycle.run("worker", "stop")
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(pid) and not pid_alive(started[b]["pid"])
    assert lifecycle.run("worker", "status").returncode == 3
    assert lifecycle.run("worker", "status", a, "--json").returncode == 3


def test_graceful_stop_lets_the_running_task_finish(lifecycle) -> None:
    node = _name("g")
    assert lifecycle.run("worker", "start", node, *LIGHT, "-I", TASKS_MODULE).returncode == 0
    result, marker = _send_sleep(lifecycle, 3)
    wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
    stop = lifecycle.run("worker", "stop", node, "--timeout", "30", "--json")
    assert stop.returncode == 0, stop.stderr
    assert json.loads(stop.stdout)[0]["outcome"] == "warm"
    assert os.path.exists(marker + ".done")
    assert result.get(timeout=5) == 3
    assert _depth() == 0


def test_cold_stop_requeues_the_running_task(lifecycle) -> None:
    node = _name("c")
    start = lifecycle.run("worker", "start", node, "--pool", "prefork", "-c", "1", "-I", TASKS_MODULE)
    assert start.returncode == 0, start.stderr
    pid = lifecycle.state(node)["pid"]
    _result, marker = _send_sleep(lifecycle, 60)
    wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
    stop = lifecycle.run("worker", "stop", node, "--timeout", "1", "--cold-timeout", "20")
    assert stop.returncode == 10, stop.stderr  # the cold shutdown ended it: not still running after 20 s
    assert "cold shutdown (SIGQUIT)" in stop.stderr and "stopped by a cold shutdown" in stop.stderr
    assert f"1 task running: {SLEEP_TASK}" in stop.stderr  # what the stop waits for is shown
    assert not pid_alive(pid)
    assert not os.path.exists(marker + ".done")
    assert _depth() == 1  # re-queued, not lost


def test_a_stuck_node_is_killed_only_with_force_and_its_task_is_not_lost(lifecycle) -> None:
    node = _name("k")
    assert lifecycle.run("worker", "start", node, *LIGHT, "-I", TASKS_MODULE).returncode == 0
    pid = lifecycle.state(node)["pid"]
    _result, marker = _send_sleep(lifecycle, 60, block_signals=True)
    wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
    # bounded (celery#1770): gives up after the cold timeout; `run` fails the test if it hangs instead
    refused = lifecycle.run("worker", "stop", node, "--timeout", "0.5", "--cold-timeout", "0.5", timeout=30)
    assert refused.returncode == 1 and "STILL RUNNING" in refused.stderr, refused.stderr
    assert "cold shutdown (SIGQUIT)" in refused.stderr  # it escalated before giving up
    assert pid_alive(pid) and lifecycle.state(node)["pid"] == pid
    forced = lifecycle.run("worker", "stop", node, "--timeout", "0.5", "--cold-timeout", "0.5", "--force")
    assert forced.returncode == 11 and "SIGKILL" in forced.stderr, forced.stderr
    assert not pid_alive(pid)
    assert _depth() == 1  # held in the unacked hash: Redis gives it back (visibility timeout), not lost
    assert lifecycle.state(node) is None and not (lifecycle.home / "run" / f"{node}.pid").exists()


def test_stale_pidfile_of_a_reused_pid_is_reported_and_never_signalled(lifecycle) -> None:
    settings = lifecycle.settings()
    unrelated = subprocess.Popen(["sleep", "60"])
    lifecycle.extra_pids.append(unrelated.pid)
    finished = subprocess.Popen(["true"])
    finished.wait()
    for name, pid, create_time in (("ghost", unrelated.pid, psutil.Process(unrelated.pid).create_time() - 500),
                                   ("crashed", finished.pid, 1.0)):
        pidfile = pidfile_path(settings, name)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{pid}\n")
        save_node(settings, NodeState(name=name, hostname=f"{name}@{HOST}", pid=pid, create_time=create_time,
                                      pidfile=str(pidfile), queues=["default"]))
    pidfile_path(settings, "handmade").write_text(f"{unrelated.pid}\n")  # no state file, not a celery worker

    status = lifecycle.invoke("worker", "status", "--json")
    assert status.exit_code == 5
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert (rows["ghost"]["status"], rows["crashed"]["status"], rows["handmade"]["status"]) == (
        "stale", "crashed", "stale")
    assert "not ours" in rows["ghost"]["note"] and "sleep 60" in rows["ghost"]["note"]
    assert "dead" in rows["crashed"]["note"] and "killed without logging a shutdown" in rows["crashed"]["note"]

    stop = lifecycle.invoke("worker", "stop", "ghost", "crashed", "handmade")
    assert stop.exit_code == 0
    assert stop.stderr.count("stale pidfile (removed, nothing signalled)") == 3, stop.stderr
    assert unrelated.poll() is None  # untouched
    assert not list((lifecycle.home / "run").glob("*.pid"))
    assert lifecycle.invoke("worker", "status").exit_code == 3


def test_start_with_a_broken_config_exits_nonzero_with_the_log_tail(lifecycle) -> None:
    node = _name("broken")
    # a start timeout longer than the subprocess's: only noticing the death (not the timeout) ends it in time
    start = lifecycle.run("worker", "start", node, *LIGHT, "-I", "no_such_module_xyz", "--timeout", "600")
    assert start.returncode == 1
    assert "failed to start: exited with status" in start.stderr
    assert "No module named 'no_such_module_xyz'" in start.stderr  # the log's last lines
    assert lifecycle.state(node) is None
    assert lifecycle.run("worker", "status", node).returncode == 3

    slow = lifecycle.run("worker", "start", node, *LIGHT, "--timeout", "0.3", "--json")  # not up in time
    assert slow.returncode == 1 and "did not answer a ping within 0.3s; stopped it" in slow.stderr
    assert not pid_alive(json.loads(slow.stdout)[0]["pid"])
    assert lifecycle.state(node) is None and not (lifecycle.home / "run" / f"{node}.pid").exists()

    down = lifecycle.run("worker", "start", node, *LIGHT, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 69 and "broker unreachable" in down.stderr
    bad = lifecycle.run("worker", "start", node, env={"MIN_CONFIDENCE_SCORE": "7"})
    assert bad.returncode == 2 and "MIN_CONFIDENCE_SCORE" in bad.stderr
    assert "Traceback" not in start.stderr + down.stderr + bad.stderr.split("last lines")[0]


def test_restart_keeps_the_options_the_node_was_started_with(lifecycle) -> None:
    node = _name("r")
    settings = lifecycle.settings()
    pidfile_path(settings, node).parent.mkdir(parents=True)
    pidfile_path(settings, node).write_text(f"{os.getpid()}\n")  # stale: a live pid that is not a worker
    start = lifecycle.run("worker", "start", node, "-Q", "monitoring,default", *LIGHT, "-l", "warning")
    assert start.returncode == 0, start.stderr
    assert "removed stale" in start.stderr
    first = lifecycle.state(node)
    restart = lifecycle.run("worker", "restart", node)
    assert restart.returncode == 0, restart.stderr
    second = lifecycle.state(node)
    assert second["pid"] != first["pid"] and not pid_alive(first["pid"])
    for option in ("queues", "pool", "concurrency", "loglevel", "logfile"):
        assert second[option] == first[option], option
    cmdline = psutil.Process(second["pid"]).cmdline()
    assert cmdline[cmdline.index("-Q") + 1] == "monitoring,default" and "warning" in cmdline
    assert _ping(f"{node}@{HOST}") == {f"{node}@{HOST}"}
    assert lifecycle.run("worker", "stop", node).returncode == 0
    remembered = json.loads(lifecycle.run("worker", "status", node, "--json").stdout)[0]
    assert remembered["status"] == "not-running" and remembered["queues"] == ["monitoring", "default"]


def test_logs_are_appended_survive_rotation_and_hold_no_secrets(lifecycle) -> None:
    secrets = {"OPENAI_API_KEY": "sk-test-" + uuid.uuid4().hex, "TELEGRAM_BOT_TOKEN": "123456:" + uuid.uuid4().hex}
    lifecycle.env.update(secrets)
    start = lifecycle.run("worker", "start", *LIGHT, "-I", TASKS_MODULE)  # the default node "worker"
    assert start.returncode == 0, start.stderr
    log = lifecycle.logs / "celery_worker.log"
    assert log.exists() and lifecycle.state("worker")["logfile"] == str(log)
    log.rename(log.with_suffix(".log.1"))  # logrotate's rename
    result, _marker = _send_sleep(lifecycle, 0)
    result.get(timeout=30)
    wait_for(lambda: log.exists() and "succeeded" in log.read_text(), 10, "the task's log line in the new file")
    assert lifecycle.run("worker", "restart").returncode == 0
    assert lifecycle.run("worker", "stop").returncode == 0
    text = log.read_text()
    assert "succeeded" in text and text.count(f"worker@{HOST} ready.") == 1  # appended after the rotation
    everything = text + log.with_suffix(".log.1").read_text()
    for value in secrets.values():
        assert value not in everything


def test_foreground_runs_celery_in_place(lifecycle) -> None:
    node = _name("fg")
    process = lifecycle.popen("worker", "start", node, "--foreground", *LIGHT)
    lifecycle.extra_pids.append(process.pid)
    try:
        wait_for(lambda: _ping(f"{node}@{HOST}") or process.poll() is not None, 60, "the node to answer")
        assert process.poll() is None
        assert lifecycle.state(node)["pid"] == process.pid  # exec: the CLI became the worker
        assert lifecycle.run("worker", "status", node).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
    assert lifecycle.run("worker", "status", node).returncode == 3


def test_start_refuses_to_take_over_a_live_worker_it_has_no_state_for(lifecycle) -> None:
    """A worker of this node runs (its pidfile says so) but carsctl kept no state file for it: start
    must refuse and leave it alone, not remove its pidfile and spawn a second node under the same name."""
    node = _name("orphan")
    settings = lifecycle.settings()
    pidfile = pidfile_path(settings, node)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    # what `ps` shows of a worker carsctl would have started: "celery", "worker" and this node's pidfile
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "celery", "worker",
                               "--pidfile", str(pidfile)], preexec_fn=default_signals)
    lifecycle.extra_pids.append(orphan.pid)
    pidfile.write_text(f"{orphan.pid}\n")

    start = lifecycle.invoke("worker", "start", node, *LIGHT)
    assert start.exit_code == 1, start.output
    assert f"{node}@{HOST} runs (pid {orphan.pid}) but carsctl has no state for it" in start.stderr
    assert f"kill -TERM {orphan.pid}" in start.stderr  # the way out
    assert orphan.poll() is None  # untouched
    assert pidfile.read_text().strip() == str(orphan.pid)
    assert lifecycle.state(node) is None and not (lifecycle.logs / f"celery_worker-{node}.log").exists()
