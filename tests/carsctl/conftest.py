"""Fixtures of the lifecycle tests (worker, beat, flower, up/down, systemd, the embedded broker).

`lifecycle` gives each test its own CARSCTL_HOME and LOG_DIR, a task module with a sleeping task the
workers import (`--include carsctl_lifecycle_tasks`), and a finalizer that stops, by pid, every process
the test's state files point at, even when the test failed. `short_home` is a CARSCTL_HOME short enough
for the embedded Redis's unix socket, removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from carsctl.process.supervise import default_signals
from tests.carsctl.ops import TASKS_MODULE

ROOT = Path(__file__).resolve().parents[2]
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
                              cwd=self.tmp, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=default_signals)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`python -m carsctl ARGS` started in the background (output piped)."""
        return subprocess.Popen([sys.executable, "-m", "carsctl", *args], env=self.env, cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_signals)

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
        """A node's state file as JSON (None when carsctl keeps none for it)."""
        path = self.home / "nodes" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def settings(self) -> Any:
        from cars_bot.config import get_settings, reset_settings

        reset_settings()
        return get_settings()


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


@pytest.fixture
def lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_client: Any,
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


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A fresh directory with a short path (a unix socket path must stay under 104 characters, which
    pytest's tmp_path may exceed), removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="cb-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
