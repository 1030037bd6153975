"""Fixtures of the fault-injection suite: real `celery worker` processes started by carsctl, the
session's Redis (or a private redis-server a test may kill), the session's database.

`stack` is the carsctl environment of `tests/carsctl/conftest.py` (`lifecycle`: its own CARSCTL_HOME,
LOG_DIR, every process it started stopped by pid afterwards) on an emptied database, plus what the
suite needs: import posts, start and kill workers, wait for the pipeline, count what was published.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carsctl.process.supervise import default_signals
from tests.carsctl.conftest import Lifecycle, _stop_by_pid, lifecycle, short_home  # noqa: F401 - fixtures

SALE_TEMPLATES = (
    "Продам Toyota Camry {year}, 2.5 АКПП, бензин, пробег {km} 000 км, Москва. Цена {price} 000 руб.",
    "Lada Vesta {year}, 1.6 МКПП, пробег {km} тыс. км, не бита. Санкт-Петербург. {price} 000 ₽, торг.",
    "Продаю Kia Rio {year} г.в., автомат, пробег {km}к, один владелец. Казань, {price} тыс. руб.",
)
NOT_SALE = "Куплю Hyundai Solaris {year}, бюджет до {price} 000, пробег до {km}к. Предлагайте в личку!"
#: Every fourth post is not a sale (rejected); the others are published to the outbox.
REJECT_EVERY = 4


def post_records(count: int, channel: str = "@reliability") -> list[dict[str, Any]]:
    """`count` distinct posts, one message id each (1..count)."""
    records = []
    for n in range(1, count + 1):
        values = {"year": 2010 + n % 12, "km": 20 + n % 150, "price": 600 + n}
        template = NOT_SALE if n % REJECT_EVERY == 0 else SALE_TEMPLATES[n % len(SALE_TEMPLATES)]
        records.append({"channel": channel, "message_id": n, "text": template.format(**values)})
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    """A carsctl environment with helpers to break it."""

    run: Lifecycle
    sessions: Any
    app: Any
    killed: list[int] = field(default_factory=list)  # pool children orphaned by a killed main process

    @property
    def home(self) -> Path:
        return self.run.home

    def carsctl(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        return self.run.run(*args, env=env, timeout=timeout)

    def start_worker(self, name: str = "w", *options: str) -> subprocess.CompletedProcess[str]:
        result = self.carsctl("worker", "start", name, *options)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def worker_pid(self, name: str = "w") -> int:
        state = self.run.state(name)
        assert state and state.get("pid"), f"no running worker {name}"
        return int(state["pid"])

    def pool_children(self, name: str = "w") -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.worker_pid(name)).children()]

    def kill9(self, pid: int) -> None:
        """SIGKILL one process; the pool children of a killed main process are remembered for clean-up."""
        import psutil

        try:
            self.killed += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        os.kill(pid, signal.SIGKILL)

    def statuses(self) -> Counter[str]:
        from sqlalchemy import func, select

        from cars_bot.db.models import Post

        with self.sessions() as session:
            return Counter({str(status): count for status, count in
                            session.execute(select(Post.status, func.count()).group_by(Post.status))})

    def finished(self, total: int) -> bool:
        counts = self.statuses()
        return counts["published"] + counts["rejected"] + counts["failed"] >= total


@pytest.fixture
def stack(lifecycle: Lifecycle, db: Any, celery_app_real: Any,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """carsctl on the session Redis (flushed) and database (emptied); publishing unthrottled."""
    from cars_bot.config import reset_settings

    lifecycle.env["PUBLISH_RATE_PER_MINUTE"] = "10000"
    monkeypatch.setenv("PUBLISH_RATE_PER_MINUTE", "10000")  # the highest allowed: never the bottleneck here
    reset_settings()
    state = Stack(lifecycle, db, celery_app_real)
    try:
        yield state
    finally:
        for pid in state.killed:
            _stop_by_pid(pid, None)
        reset_settings()


@dataclass
class PrivateRedis:
    """A redis-server of this test only (a unix socket in a short directory), to kill and bring back."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None
    persistent: bool = True  # an append-only file, as the embedded broker keeps one

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> None:
        import redis

        from carsctl.process.embedded_redis import redis_server_binary

        binary, _origin = redis_server_binary()
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [str(binary), "--port", "0", "--unixsocket", str(self.socket), "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=default_signals)

        def answers() -> bool:
            try:
                return bool(self.socket.exists() and self.client().ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(answers, 10, "the private redis-server to answer")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed broker goes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, a clean shutdown: the append-only file is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def private_redis(short_home: Path) -> Iterator[PrivateRedis]:  # noqa: F811
    server = PrivateRedis(short_home)
    server.start()
    try:
        yield server
    finally:
        server.kill()
