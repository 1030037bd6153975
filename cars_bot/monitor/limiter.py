"""Every Telegram request of the monitor goes through one limiter: requests are spaced, a FloodWait
pauses ALL requests for exactly the time Telegram asks (plus a second), and network trouble backs off
exponentially (with jitter) before the request is tried again."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("cars_bot.monitor")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def is_network_error(error: BaseException) -> bool:
    """Connection trouble, timeouts and Telegram's own 5xx: worth trying again later."""
    from telethon.errors import RPCError, ServerError, TimedOutError

    if isinstance(error, (ServerError, TimedOutError)):
        return True
    if isinstance(error, RPCError):
        return False
    return isinstance(error, (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError))


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds before try `attempt` + 1: base * 2^attempt, at most `cap`, +-20% jitter."""
    return min(cap, base * 2 ** attempt) * random.uniform(0.8, 1.2)


class TelegramLimiter:
    """Spacing, FloodWait and network backoff for the monitor's requests (see the module docstring)."""

    def __init__(self, *, min_interval: float = 1.0, attempts: int = 5, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic) -> None:
        self.min_interval = min_interval
        self.attempts = attempts
        self.sleep = sleep
        self.clock = clock
        self.cooldown_until = 0.0  # a FloodWait holds every request until then
        self._next_slot = 0.0
        self._lock = asyncio.Lock()
        self.flood_waits = 0  # how many FloodWaits were honoured (status)

    async def _turn(self) -> None:
        async with self._lock:
            wait = max(self.cooldown_until, self._next_slot) - self.clock()
            if wait > 0:
                await self.sleep(wait)
            self._next_slot = self.clock() + self.min_interval

    async def call(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        """`await make()` in its turn; on FloodWait wait as told and retry, on network errors back off
        and retry, up to `attempts` tries (then the last error is raised). Other errors propagate."""
        from telethon.errors import FloodWaitError

        for attempt in range(self.attempts):
            await self._turn()
            try:
                return await make()
            except FloodWaitError as error:
                if attempt + 1 >= self.attempts:
                    raise
                self.flood_waits += 1
                self.cooldown_until = self.clock() + error.seconds + 1
                logger.warning("%s: FloodWait, every request waits %ss", what, error.seconds)
            except Exception as error:
                if not is_network_error(error) or attempt + 1 >= self.attempts:
                    raise
                delay = backoff_delay(attempt)
                logger.warning("%s: %s: %s; retrying in %.1fs", what, type(error).__name__, error, delay)
                await self.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises
