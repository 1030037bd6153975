"""The seed's own `celery -A cars_bot.celery_app ...` commands (../shared/spec/tasks-README.ru.md), plus
`inspect conf` and `report`, work against this app with the REDIS_URL broker and with carsctl's embedded
broker (a `socket://` URL, which kombu alone cannot resolve)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers import ROOT, stop_process

pytestmark = [pytest.mark.slow]

#: The seed's read commands, and the two that failed with KeyError('No such transport: socket').
SEED_COMMANDS = [("inspect", "active"), ("inspect", "stats"), ("inspect", "reserved"), ("inspect", "scheduled"),
                 ("inspect", "conf"), ("report",)]


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll the log until it holds `text` (the process's own readiness line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"{text!r} not in {log} within {timeout}s")


@pytest.fixture(params=["REDIS_URL", "embedded"])
def broker_env(request: pytest.FixtureRequest, db: object, short_tmp: Path) -> Iterator[dict[str, str]]:
    """The environment of a seed command line: the session's REDIS_URL, or the embedded broker carsctl
    starts (no REDIS_URL) in a short CARSCTL_HOME."""
    env = {**os.environ, "CARSCTL_HOME": str(short_tmp), "LOG_DIR": str(short_tmp / "logs")}
    if request.param == "REDIS_URL":
        request.getfixturevalue("redis_client")  # the session Redis, emptied
        yield env
        return
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 60, "env": env}
    started = subprocess.run([sys.executable, "-m", "carsctl", "broker", "start"], **run)
    assert started.returncode == 0, started.stderr
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "carsctl", "broker", "stop"], **run)


def test_every_seed_celery_command_works(broker_env: dict[str, str], short_tmp: Path) -> None:
    def celery(*args: str, **popen: object) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", *args]

    node = f"seed-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
    worker_log, beat_log = short_tmp / "worker.log", short_tmp / "beat.log"
    worker = subprocess.Popen(celery("worker", "-l", "info", "-c", "4", "-n", node, "--logfile", str(worker_log)),
                              cwd=ROOT, env=broker_env)
    beat = None
    try:
        _wait_for_line(worker_log, f"{node} ready.", worker)
        beat = subprocess.Popen(celery("beat", "-l", "info", "--logfile", str(beat_log)), cwd=ROOT, env=broker_env)
        _wait_for_line(beat_log, "beat: Starting...", beat)
        for command in SEED_COMMANDS:
            result = subprocess.run(celery(*command), cwd=ROOT, env=broker_env, capture_output=True, text=True,
                                    timeout=60)
            output = result.stdout + result.stderr
            assert result.returncode == 0 and "Traceback" not in output and "KeyError" not in output, (command, output)
            if command[0] == "inspect":
                assert node in result.stdout, (command, output)
            if command[-1] in ("conf", "report"):
                assert "broker_transport: 'cars_bot.broker:PriorityRedisTransport'" in result.stdout or \
                       '"broker_transport": "cars_bot.broker:PriorityRedisTransport"' in result.stdout, output
        assert beat.poll() is None and worker.poll() is None
    finally:
        if beat is not None:
            stop_process(beat)
        stop_process(worker)
