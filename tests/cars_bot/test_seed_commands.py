"""The seed's own `celery -A cars_bot.celery_app ...` commands work against this app, with the
machine's/REDIS_URL broker and with carsctl's embedded broker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers import ROOT, celery_worker

pytestmark = [pytest.mark.slow]


def _celery(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_inspect_active_answers_with_redis_url(celery_app_real, db, tmp_path) -> None:
    with celery_worker(celery_app_real, log=tmp_path / "w.log") as (_process, node):
        result = _celery("inspect", "active", "-d", node)
        assert result.returncode == 0, result.stdout + result.stderr
        assert node in result.stdout and "empty" in result.stdout
        stats = _celery("inspect", "stats", "-d", node)
        assert stats.returncode == 0 and "1 node online." in stats.stdout


def test_inspect_active_answers_with_the_embedded_broker(db, short_tmp: Path) -> None:
    home = short_tmp
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL",
                                                           "CELERY_RESULT_BACKEND")}
    env.update({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs")})
    run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 60, "env": env}
    assert subprocess.run([sys.executable, "-m", "carsctl", "broker", "start"], **run).returncode == 0
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "worker", "-l", "info",
                               "-P", "solo", "-n", "seed@%h", "--logfile", str(home / "w.log")], cwd=ROOT, env=env)
    try:
        node = f"seed@{os.uname().nodename}"
        for _ in range(60):
            result = subprocess.run([sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "inspect",
                                     "active", "-d", node], **run)
            if result.returncode == 0:
                break
        assert result.returncode == 0, result.stdout + result.stderr
        assert node in result.stdout
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "carsctl", "broker", "stop"], **run)
