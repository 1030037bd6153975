"""`LockedScheduler`, the beat scheduler of `cars_bot.beat` (see there): Celery's PersistentScheduler plus the
lock and the heartbeat.

A module of its own so that reading the heartbeat (`carsctl status`) does not import `celery.beat`
(~90 ms); `cars_bot.beat.LockedScheduler` loads it on first use, which is how Celery finds it
(`beat_scheduler = "cars_bot.beat:LockedScheduler"`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.beat import PersistentScheduler

from cars_bot.beat import (
    _COMPARE_AND_DELETE,
    _COMPARE_AND_SET,
    _REFRESH,
    HEARTBEAT_KEY,
    HEARTBEAT_TTL,
    LOCK_KEY,
    MAX_TICK_INTERVAL,
    RECHECK_AFTER,
    RETRY_INTERVAL,
    BeatLockHeld,
    BeatLockLost,
    EntryRuns,
    Heartbeat,
    LockHolder,
    _iso,
    _loads,
    _whole_seconds,
    holder_is_dead,
    lock_holder,
    logger,
    machine_id,
    read_heartbeat,
)


class LockedScheduler(PersistentScheduler):
    """PersistentScheduler that holds the broker-wide beat lock and writes a heartbeat every tick."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from cars_bot.config import get_settings

        self._redis: Any = None
        self._lock_conn: Any = None
        self._lock_value: str | None = None
        self._lock_ttl = get_settings().beat_lock_ttl
        self._checked_at: float | None = None  # time.monotonic() of the last successful lock check
        self._lost = False
        self._unreachable = False
        super().__init__(*args, **kwargs)

    # --- lifecycle -------------------------------------------------------------------------
    def setup_schedule(self) -> None:
        """Take the lock (or refuse to start), then open the schedule file and write a first heartbeat."""
        self.max_interval = min(self.max_interval, MAX_TICK_INTERVAL, self._lock_ttl / 4)
        self._redis = self._open_redis()
        if self._redis is not None:
            self._acquire_lock()  # before the schedule file is opened: a second beat must not touch it
        super().setup_schedule()
        self._write_heartbeat()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Refresh the lock and check it is still ours, then one scheduler pass, then the heartbeat.

        Raises BeatLockLost when another beat holds the lock; sends nothing (and retries in a second)
        when the broker cannot be reached.
        """
        if self._redis is not None and not self._refresh_lock():
            return RETRY_INTERVAL
        interval = super().tick(*args, **kwargs)
        self._write_heartbeat()
        return min(interval, self.max_interval)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Send one due entry, checking the lock again first if this beat may have been paused since."""
        if self._redis is not None and (self._checked_at is None
                                        or time.monotonic() - self._checked_at > RECHECK_AFTER):
            if not self._refresh_lock():
                from celery.beat import SchedulingError

                raise SchedulingError(f"not sending {entry.name}: the beat lock could not be checked")
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self) -> None:
        """Save the schedule, release the lock and delete the heartbeat.

        After the lock was lost, raise BeatLockLost again: Celery's beat loop swallows the SystemExit
        raised in tick() (the process would exit 0), but this runs in its `finally`, so the status 1
        reaches the interpreter.
        """
        try:
            super().close()
        finally:
            self._release()
        if self._lost:
            raise BeatLockLost()

    # --- the lock --------------------------------------------------------------------------
    def _open_redis(self) -> Any:
        """The broker's Redis client, through the app's own connection (same socket, db and key prefix).

        An unreachable broker is an error (beat exits, its supervisor retries): running unlocked could
        mean two beats once it comes back. Only a broker that is not Redis runs without the guard.
        """
        self._lock_conn = self.app.connection_for_write()
        client = getattr(self._lock_conn.default_channel, "client", None)
        if client is None:
            logger.warning("the broker is not Redis: running without the single-beat guard")
        return client

    def _acquire_lock(self) -> None:
        value = json.dumps({"token": uuid.uuid4().hex, "pid": os.getpid(), "hostname": socket.gethostname(),
                            "machine": machine_id(), "acquired_at": _iso(datetime.now(UTC))}, sort_keys=True)
        ttl = int(self._lock_ttl * 1000)
        if not self._redis.set(LOCK_KEY, value, nx=True, px=ttl):
            raw = self._redis.get(LOCK_KEY)
            data = _loads(raw) if raw is not None else None
            holder = LockHolder.from_json(data) if data is not None else None
            taken_over = (raw is not None and holder is not None and holder_is_dead(holder)
                          and self._redis.eval(_COMPARE_AND_SET, 1, LOCK_KEY, raw, value, ttl))
            if raw is None:  # expired between SET and GET
                taken_over = bool(self._redis.set(LOCK_KEY, value, nx=True, px=ttl))
            if not taken_over:
                who = f"{holder.hostname} (pid {holder.pid})" if holder else "another beat"
                message = (f"another beat holds {LOCK_KEY} on this broker: {who}; refusing to start, "
                           "two beats would send every periodic task twice")
                logger.error(message)
                raise BeatLockHeld(message)
            logger.warning("took over the beat lock of %s (pid %s), which no longer runs",
                           holder.hostname if holder else None, holder.pid if holder else None)
        self._lock_value = value
        self._checked_at = time.monotonic()

    def _refresh_lock(self) -> bool:
        """Extend our lock (or take it again if it expired and nobody took it). True: it is ours, send.
        False: the broker cannot be reached, send nothing. Raises BeatLockLost when another beat has it."""
        if self._lost:
            raise BeatLockLost()
        try:
            held = self._redis.eval(_REFRESH, 1, LOCK_KEY, self._lock_value, int(self._lock_ttl * 1000))
        except Exception as error:  # noqa: BLE001 - the broker is down or restarting: retry next tick
            if not self._unreachable:
                logger.warning("cannot check the beat lock, sending nothing until the broker is back: %s", error)
            self._unreachable = True
            return False
        if self._unreachable:
            logger.warning("the broker is back: beat holds its lock again")
            self._unreachable = False
        if not held:
            holder = lock_holder(self._redis) or LockHolder()
            logger.critical("the beat lock was taken by %s (pid %s) while this beat was paused or cut off: "
                            "stopping without sending, to avoid duplicates", holder.hostname, holder.pid)
            self._lock_value = None
            self._lost = True
            raise BeatLockLost()
        self._checked_at = time.monotonic()
        return True

    def _release(self) -> None:
        if self._redis is None:
            return
        try:
            if self._lock_value is not None:
                self._redis.eval(_COMPARE_AND_DELETE, 1, LOCK_KEY, self._lock_value)
                heartbeat = read_heartbeat(self._redis)
                if heartbeat and heartbeat.token == self._token():
                    self._redis.delete(HEARTBEAT_KEY)
        except Exception as error:  # noqa: BLE001 - shutting down: the TTLs clean up
            logger.warning("could not release the beat lock: %s", error)
        finally:
            self._lock_value = None
            if self._lock_conn is not None:
                self._lock_conn.release()
                self._lock_conn = None

    # --- the heartbeat ---------------------------------------------------------------------
    def heartbeat(self) -> Heartbeat:
        """What this beat writes on every tick (see the module docstring)."""
        now = datetime.now(UTC)
        entries = {}
        for name, entry in sorted(self.schedule.items()):
            try:
                remaining = entry.schedule.remaining_estimate(entry.last_run_at)
            except Exception:  # noqa: BLE001 - a custom schedule without an estimate
                remaining = timedelta(seconds=entry.is_due()[1])
            entries[name] = EntryRuns(task=entry.task,
                                      last_run_at=_iso(entry.last_run_at) if entry.total_run_count else None,
                                      next_run_at=_iso(_whole_seconds(now + max(remaining, timedelta(0)))))
        return Heartbeat(pid=os.getpid(), hostname=socket.gethostname(), tick_at=_iso(now),
                         max_interval=self.max_interval, entries=entries, token=self._token())

    def _token(self) -> str | None:
        data = _loads(self._lock_value) if self._lock_value else None
        return data.get("token") if data else None

    def _write_heartbeat(self) -> None:
        if self._redis is None:
            return
        try:
            self._redis.set(HEARTBEAT_KEY, self.heartbeat().to_json(), ex=HEARTBEAT_TTL)
        except Exception as error:  # noqa: BLE001 - never let the heartbeat stop the schedule
            logger.warning("could not write the beat heartbeat: %s", error)
