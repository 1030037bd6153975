"""Fixtures for the monitor: channel rows in the test database, the fake Telegram, a monitor on both,
and the number of process_post_task messages on the broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cars_bot.monitor.fake_monitor_client import FakeMonitorClient


@dataclass
class SleepLog:
    """An injected sleep and clock: a sleep records its duration, moves the clock on and yields to the
    loop without waiting."""

    slept: list[float] = field(default_factory=list)
    now: float = 1000.0

    async def __call__(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now


@dataclass
class MonitorKit:
    """What a monitor test needs: the database, the fake Telegram, a monitor factory, the broker count."""

    db: Any
    fake: FakeMonitorClient
    sleeps: SleepLog
    app: Any

    def add_channel(self, ref: str, *, active: bool = True, phone: str | None = None,
                    seller: str | None = None) -> int:
        from cars_bot.db.models import Channel

        with self.db.begin() as session:
            row = Channel(username=ref, is_active=active, seller_phone=phone, seller_username=seller)
            session.add(row)
            session.flush()
            return row.id

    def set_active(self, channel_id: int, active: bool) -> None:
        from cars_bot.db.models import Channel

        with self.db.begin() as session:
            session.get(Channel, channel_id).is_active = active

    def monitor(self, **options: Any) -> Any:
        from cars_bot.monitor.limiter import TelegramLimiter
        from cars_bot.monitor.service import Monitor

        options.setdefault("interval", 60.0)
        options.setdefault("album_wait", 30.0)  # albums end by the next message or the stop, not by time
        options.setdefault("reconnect_base", 0.01)
        limiter = TelegramLimiter(min_interval=0, sleep=self.sleeps, clock=self.sleeps.clock)
        return Monitor(self.fake, limiter=limiter, **options)

    def posts(self) -> list[Any]:
        from sqlalchemy import select

        from cars_bot.db.models import Post

        with self.db() as session:
            return list(session.scalars(select(Post).order_by(Post.message_id)))

    def queued(self) -> int:
        """process_post_task messages waiting on the broker (ai_processing)."""
        from cars_bot.broker import queue_depths

        return queue_depths(self.app, ["ai_processing"])["ai_processing"].ready

    def position(self, channel_id: int) -> int:
        from sqlalchemy import select

        from cars_bot.db.models import MonitorChannel

        with self.db() as session:
            return session.scalar(select(MonitorChannel.last_message_id)
                                  .where(MonitorChannel.channel_id == channel_id)) or 0


@pytest.fixture
def kit(db: Any, celery_app_real: Any) -> MonitorKit:
    return MonitorKit(db=db, fake=FakeMonitorClient(), sleeps=SleepLog(), app=celery_app_real)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` on the loop (the monitor runs meanwhile) until true, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def running(monitor: Any, body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `monitor` while `body(stop)` drives it; stop it at the end and re-raise its errors."""
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await body(stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
