"""Fixtures and helpers shared by the lifecycle tests (imported by them; this module holds no tests).

`lifecycle` gives each test its own CARSCTL_HOME and LOG_DIR, a task module with a sleeping task the
workers import (`--include carsctl_lifecycle_tasks`), and a finalizer that stops, by pid, every process
the test's state files point at, even when the test failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "carsctl_lifecycle_tasks"
SLEEP_TASK = "carsctl_test.sleep"
TASKS_SOURCE = '''
"""A task for lifecycle tests: sleeps, leaving marker files when it starts and when it finishes."""
import signal
import time
from pathlib import Path

from cars_bot.celery_app import app


@app.task(name="carsctl_test.sleep")
def sleep(seconds, marker=None, block_signals=False):
    if block_signals:  # a stuck task: TERM and QUIT stay pending, like a worker wedged in C code
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGQUIT, signal.SIGINT})
    if marker:
        Path(marker + ".started").write_text("")
    time.sleep(seconds)
    if marker:
        Path(marker + ".done").write_text("")
    return seconds
'''


@dataclass
class Lifecycle:
    """One test's carsctl environment: run the CLI (subprocess or in-process) and clean up after it."""

    tmp: Path
    home: Path
    logs: Path
    env: dict[str, str]
    extra_pids: list[int] = field(default_factory=list)

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """`python -m carsctl ARGS` as a real subprocess (process management is tested this way)."""
        return subprocess.run([sys.executable, "-m", "carsctl", *args], env={**self.env, **(env or {})},
                              cwd=self.tmp, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "carsctl", *args], env=self.env, cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def invoke(self, *args: str) -> Any:
        """carsctl in-process (light commands); asserts that no traceback was printed."""
        from cars_bot.config import reset_settings
        from carsctl.app import app

        reset_settings()
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        reset_settings()
        assert "Traceback" not in result.output, result.output
        return result

    def state(self, name: str) -> dict[str, Any] | None:
        path = self.home / "nodes" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def settings(self) -> Any:
        from cars_bot.config import get_settings, reset_settings

        reset_settings()
        return get_settings()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_by_pid(pid: int, create_time: float | None) -> None:
    """SIGTERM, then SIGKILL (with children) a process this test started, if it is still that process."""
    import psutil

    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > 0.5:
            return
        children = process.children(recursive=True)
        process.send_signal(signal.SIGCONT)
        process.terminate()
        _gone, alive = psutil.wait_procs([process], timeout=10)
        for victim in [*alive, *children]:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass


@pytest.fixture(name="lifecycle")
def lifecycle_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_client: Any,
              migrated_database: str) -> Iterator[Lifecycle]:
    """A private CARSCTL_HOME/LOG_DIR on the session Redis (flushed) and database (migrated)."""
    from cars_bot.config import reset_settings

    home, logs = tmp_path / "home", tmp_path / "logs"
    monkeypatch.setenv("CARSCTL_HOME", str(home))
    monkeypatch.setenv("LOG_DIR", str(logs))
    reset_settings()
    (tmp_path / f"{TASKS_MODULE}.py").write_text(TASKS_SOURCE)
    path = os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "CARSCTL_HOME": str(home), "LOG_DIR": str(logs)}
    monkeypatch.setenv("PYTHONPATH", path)
    state = Lifecycle(tmp_path, home, logs, env)
    try:
        yield state
    finally:
        for path_ in sorted((home / "nodes").glob("*.json")) if (home / "nodes").is_dir() else []:
            data = json.loads(path_.read_text())
            if data.get("pid"):
                _stop_by_pid(int(data["pid"]), data.get("create_time"))
        for pid in state.extra_pids:
            _stop_by_pid(pid, None)
        reset_settings()
