"""The seed's make targets: each calls carsctl, and runs (a real worker and beat, started and stopped)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.carsctl.conftest import ROOT

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _make(lifecycle, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target,
                           f"CARSCTL={sys.executable} -m carsctl", *variables],
                          env=lifecycle.env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_every_seed_make_target_runs(lifecycle) -> None:
    node = f"worker@{socket.gethostname()}"
    started = _make(lifecycle, "run-celery-worker", "WORKER_ARGS=--pool solo -c 1 -Q monitoring,default")
    assert started.returncode == 0 and f"{node} started" in started.stderr, started.stderr
    beat = _make(lifecycle, "run-celery-beat")
    assert beat.returncode == 0 and "beat@" in beat.stderr and " started" in beat.stderr, beat.stderr

    status = _make(lifecycle, "celery-status")
    assert status.returncode == 0 and node in status.stdout, status.stdout + status.stderr
    stats = _make(lifecycle, "celery-stats")
    assert stats.returncode == 0 and node in stats.stdout, stats.stderr

    from cars_bot.celery_app import app

    app.send_task("cars_bot.tasks.sheets_tasks.sync_subscribers_task", queue="sheets_sync")  # nobody consumes it
    refused = _make(lifecycle, "celery-purge")  # no terminal: carsctl's confirmation refuses
    assert refused.returncode != 0 and "refusing to purge without --yes" in refused.stderr
    purged = _make(lifecycle, "celery-purge", "PURGE_ARGS=--yes")
    assert purged.returncode == 0 and "Purged 1 message from 1 queue" in purged.stderr, purged.stderr

    stopped = _make(lifecycle, "stop-celery")
    assert stopped.returncode == 0 and f"{node} stopped" in stopped.stderr and "beat@" in stopped.stderr, \
        stopped.stderr
    assert lifecycle.run("worker", "status").returncode == 3 and lifecycle.run("beat", "status").returncode == 3
