"""Real `celery worker` subprocesses for tests (the seed's own command line)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def celery_worker(app: object, *, queues: str = "default,ai_processing,publishing,sheets_sync,monitoring",
                  pool: str = "solo", concurrency: int = 1, log: Path | None = None,
                  extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
                  ready_timeout: float = 30.0) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run `celery -A cars_bot.celery_app worker` until the block ends; yields (process, node name)."""
    node = f"test-{uuid.uuid4().hex[:8]}@%h"
    command = [sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "worker", "-l", "info",
               "-P", pool, "-c", str(concurrency), "-Q", queues, "-n", node, "--without-mingle",
               "--without-gossip", *extra]
    output = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    hostname = node.replace("%h", os.uname().nodename)
    try:
        _wait_ready(app, hostname, process, ready_timeout)
        yield process, hostname
    finally:
        stop_process(process)
        if log:
            output.close()  # type: ignore[union-attr]


def _wait_ready(app: object, node: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode} during start-up")
        replies = app.control.ping(destination=[node], timeout=0.5)  # type: ignore[attr-defined]
        if replies:
            return
    raise RuntimeError(f"worker {node} did not answer a ping within {timeout}s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL if it has not exited within 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
