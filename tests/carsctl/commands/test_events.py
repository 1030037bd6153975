"""`carsctl events`: Celery's event stream from a real worker, as NDJSON and as the live screen."""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid

import pytest

from tests.carsctl.cli import run_carsctl
from tests.carsctl.commands.conftest import WatchedProcess
from tests.carsctl.ops import SLEEP_TASK, TASKS_MODULE

HOST = socket.gethostname()


def _worker(lifecycle) -> str:
    name = f"ev{uuid.uuid4().hex[:6]}"
    start = lifecycle.run("worker", "start", name, "-Q", "monitoring", "--pool", "solo", "-c", "1", "-I", TASKS_MODULE)
    assert start.returncode == 0, start.stderr
    return f"{name}@{HOST}"


def _send_until(watched: WatchedProcess, args: list, seen, timeout: float = 30.0) -> list[str]:
    """Send the sleep task until `seen(stdout lines)` holds: the receiver subscribes a moment after
    carsctl starts, and an event published before that is not delivered to it."""
    from cars_bot.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.send_task(SLEEP_TASK, args=args, queue="monitoring")
        for _ in range(10):
            if seen(watched.stdout) or watched.process.poll() is not None:
                return watched.stdout
            time.sleep(0.1)  # polling the output, bounded by the deadline
    pytest.fail(f"no matching event within {timeout}s; stdout: {watched.stdout[-10:]}")


@pytest.mark.redis
@pytest.mark.slow
def test_json_streams_one_object_per_event_and_ctrl_c_exits_0(lifecycle) -> None:
    node = _worker(lifecycle)
    watched = WatchedProcess(("events", "--json", "--duration", "120"), lifecycle.env)
    try:
        def events(lines: list[str]) -> list[dict]:
            return [json.loads(line) for line in lines]

        _send_until(watched, [0], lambda lines: any(e["type"] == "task-succeeded" for e in events(lines)))
        _send_until(watched, ["x"], lambda lines: any(e["type"] == "task-failed" for e in events(lines)))
        code, lines, stderr = watched.interrupt()
    finally:
        watched.kill()
    assert code == 0 and "Traceback" not in stderr and "(stopped: interrupted)" in stderr
    parsed = events(lines)  # every line is one JSON object
    done = next(e for e in parsed if e["type"] == "task-succeeded")
    assert done["node"] == node and done["task"] == SLEEP_TASK and done["runtime_s"] is not None
    failed = next(e for e in parsed if e["type"] == "task-failed")
    assert failed["task"] == SLEEP_TASK and failed["error"].startswith("TypeError: ")
    assert not any(e["type"] == "worker-heartbeat" for e in parsed)


@pytest.mark.redis
@pytest.mark.slow
def test_the_live_screen_counts_the_workers_tasks_and_stops_after_count(lifecycle) -> None:
    node = _worker(lifecycle)
    watched = WatchedProcess(("events", "--count", "4", "--duration", "120"), lifecycle.env)
    try:
        _send_until(watched, [0], lambda _lines: watched.process.poll() is not None)
        code = watched.process.wait(timeout=30)
        watched.interrupt()
    finally:
        watched.kill()
    text = "\n".join(watched.stdout)  # not a terminal: the last frame is printed once, at the end
    assert code == 0, text
    assert "Tasks (last 60s)" in text and "sleep" in text and node in text and "Queues" in text


def test_an_unreachable_broker_is_exit_69(tmp_path) -> None:
    result = run_carsctl("events", "--duration", "1", env={"REDIS_URL": "redis://127.0.0.1:1/0",
                                                          "CARSCTL_HOME": str(tmp_path)})
    assert result.returncode == 69 and "broker unreachable" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.redis
def test_ctrl_c_on_a_terminal_leaves_the_live_screen_cleanly(redis_client, settings) -> None:
    import os
    import pty
    import select
    import signal

    pid, fd = pty.fork()
    if pid == 0:  # the child: carsctl on a terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "carsctl", "events", "--duration", "120"],
                   {**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    output = b""
    deadline = time.monotonic() + 30
    try:
        while b"no task events yet" not in output and time.monotonic() < deadline:  # the first frame
            if select.select([fd], [], [], 0.2)[0]:
                output += os.read(fd, 65536)
        assert b"no task events yet" in output, output[-500:]
        os.kill(pid, signal.SIGINT)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: carsctl exited
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode(errors="replace")
    assert "\x1b[?25h" in text and "Traceback" not in text  # the cursor is shown again
    assert "(stopped: interrupted)" in text
