"""Fixtures shared by the command tests: beat's heartbeat in the broker, and a carsctl process whose
output is watched line by line (so a test waits for what it expects instead of sleeping)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pytest


@pytest.fixture
def beat_heartbeat(redis_client: Any) -> Callable[[float], None]:
    """Write beat's heartbeat as a running beat would, its last tick `age_s` seconds ago (with one
    schedule entry that ran 5 minutes before that tick)."""
    from cars_bot.beat import HEARTBEAT_KEY

    def write(age_s: float) -> None:
        tick = datetime.now(UTC) - timedelta(seconds=age_s)
        redis_client.set(HEARTBEAT_KEY, json.dumps({
            "pid": 4242, "hostname": "beat-host", "tick_at": tick.isoformat(), "max_interval": 10,
            "entries": {"collect-stats-every-15-minutes": {
                "task": "cars_bot.tasks.monitoring_tasks.collect_stats_task",
                "last_run_at": (tick - timedelta(minutes=5)).isoformat(),
                "next_run_at": (tick + timedelta(minutes=10)).isoformat()}}}))

    return write


class WatchedProcess:
    """A running `python -m carsctl ...`; its stdout and stderr are read in the background."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "carsctl", *args], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self._stdout),
                                               (self.process.stderr, self._stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self) -> list[str]:
        with self._changed:
            return list(self._stdout)

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        """Block until `condition(stdout lines)` holds; fail with the output so far if it never does."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self._stdout):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    pytest.fail(f"carsctl never printed what was expected; stdout: {self._stdout[-20:]}, "
                                f"stderr: {self._stderr[-20:]}")
                self._changed.wait(min(remaining, 0.5))
            return list(self._stdout)

    def interrupt(self, timeout: float = 15.0) -> tuple[int, list[str], str]:
        """Ctrl-C: send SIGINT, wait for the exit; return (exit code, stdout lines, stderr text)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        with self._changed:
            return code, list(self._stdout), "\n".join(self._stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)


@pytest.fixture
def carsctl_process(settings: Any) -> Iterator[Callable[..., WatchedProcess]]:
    """Start `carsctl ARGS...` as a subprocess with this test's CARSCTL_HOME and LOG_DIR; killed at the end."""
    started: list[WatchedProcess] = []
    env = {**os.environ, "CARSCTL_HOME": str(settings.home), "LOG_DIR": str(settings.log_dir)}

    def start(*args: str) -> WatchedProcess:
        started.append(WatchedProcess(args, env))
        return started[-1]

    yield start
    for watched in started:
        watched.kill()
