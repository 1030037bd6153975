"""The beat scheduler: Celery's PersistentScheduler plus a lock and a heartbeat in the broker's Redis.

Two beats against one broker send every periodic task twice (celery#2856, #4808), and a beat that
keeps running but stops ticking is invisible (celery#9622). So :class:`LockedScheduler`:

- takes the lock `cars_bot:beat:lock` (`SET NX PX`, value = JSON with a random token, pid, host and
  machine) before it opens its schedule file, and refuses to start when another beat holds it,
  whichever directory or host that beat was started from. The token alone says whose lock it is. A
  holder on this machine (same kernel boot and pid namespace, not merely the same hostname: containers
  share hostnames) whose pid is dead, e.g. a beat killed with SIGKILL, is taken over at once; any
  other only once its lock expired (`BEAT_LOCK_TTL`, 60 s by default);
- refreshes the lock and checks that it still holds it BEFORE every tick that may send (as
  celery-redbeat does), and again right before a send if the tick's check is older than a second, so a
  beat that was paused (SIGSTOP, a frozen VM) past the TTL while another took over sends nothing: it
  stops, and its process exits with status 1. A tick comes at least every TTL/4 (at most 10) seconds.
  When the broker cannot be reached, the tick sends nothing and is retried a second later;
- writes the heartbeat `cars_bot:beat:heartbeat` on every tick: JSON
  `{"pid", "hostname", "token", "tick_at", "max_interval", "entries": {name: {"task", "last_run_at",
  "next_run_at"}}}`
  with a TTL of `HEARTBEAT_TTL`, read by `carsctl beat status` / `carsctl status` through
  :func:`read_heartbeat`;
- releases the lock and deletes the heartbeat on shutdown.

Selected in `celery_app.py` with `beat_scheduler = "cars_bot.beat:LockedScheduler"`, so a plain
`celery -A cars_bot.celery_app beat` is protected too. On a non-Redis broker it behaves like the
PersistentScheduler (with a warning): there is nowhere to keep the lock. The Redis client is the one of
the app's own broker connection, so the lock lives exactly where the tasks go.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

logger = logging.getLogger("cars_bot.beat")

HEARTBEAT_KEY = "cars_bot:beat:heartbeat"
LOCK_KEY = "cars_bot:beat:lock"
MAX_TICK_INTERVAL = 10.0
LOCK_TTL = 60.0  # the default of BEAT_LOCK_TTL
HEARTBEAT_TTL = 180
#: A send more than this many seconds after the tick's lock check checks again (the beat was paused).
RECHECK_AFTER = 1.0
#: Seconds to the next tick when the broker could not be reached.
RETRY_INTERVAL = 1.0

# Refresh our lock; take it if it expired meanwhile. 1 = held, 0 = someone else holds it.
_REFRESH = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1
elseif not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""
# Delete KEYS[1] only if it still holds exactly ARGV[1].
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Replace KEYS[1] only if it still holds exactly ARGV[1] (taking over a dead holder's lock).
_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1
end
return 0
"""


class BeatLockLost(SystemExit):
    """Another beat took this beat's lock while it was paused or cut off: it stops, with status 1."""

    def __init__(self) -> None:
        super().__init__(1)


class BeatLockHeld(SystemExit):
    """Another beat holds the lock of this broker: beat exits with status 1 (the reason is logged)."""

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class EntryRuns:
    """One periodic task in the heartbeat: its task name, last run and next run (ISO 8601, UTC)."""

    task: str
    last_run_at: str | None = None
    next_run_at: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """What a running beat writes on every tick (stored as JSON under HEARTBEAT_KEY)."""

    pid: int | None = None
    hostname: str | None = None
    tick_at: str | None = None
    max_interval: float | None = None
    entries: dict[str, EntryRuns] = field(default_factory=dict)
    token: str | None = None  # the token of the lock this beat holds

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        entries = {name: EntryRuns(task=str(entry.get("task") or ""), last_run_at=entry.get("last_run_at"),
                                   next_run_at=entry.get("next_run_at"))
                   for name, entry in (data.get("entries") or {}).items() if isinstance(entry, dict)}
        return cls(pid=data.get("pid"), hostname=data.get("hostname"), tick_at=data.get("tick_at"),
                   max_interval=data.get("max_interval"), entries=entries, token=data.get("token"))

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class LockHolder:
    """Who holds the beat lock (stored as JSON under LOCK_KEY; the token tells one holder from another)."""

    token: str | None = None
    pid: int | None = None
    hostname: str | None = None
    acquired_at: str | None = None
    machine: str | None = None  # machine_id() of the holder: whether its pid means anything here

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(token=data.get("token"), pid=data.get("pid"), hostname=data.get("hostname"),
                   acquired_at=data.get("acquired_at"), machine=data.get("machine"))


def read_heartbeat(redis_client: Any) -> Heartbeat | None:
    """The last heartbeat a running beat wrote, or None (no beat, or it stopped / went silent)."""
    data = _read_json(redis_client, HEARTBEAT_KEY)
    return None if data is None else Heartbeat.from_json(data)


def heartbeat_age(heartbeat: Heartbeat | None, now: datetime | None = None) -> float | None:
    """Seconds since the heartbeat's tick (None without a readable heartbeat)."""
    if heartbeat is None or not heartbeat.tick_at:
        return None
    try:
        tick = datetime.fromisoformat(str(heartbeat.tick_at))
    except ValueError:
        return None
    tick = tick if tick.tzinfo else tick.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - tick).total_seconds()


def stale_after(heartbeat: Heartbeat | None) -> float:
    """A heartbeat older than this means beat runs but no longer ticks (celery#9622): three of its
    loop intervals, and never less than 30 s."""
    interval = heartbeat.max_interval if heartbeat is not None and heartbeat.max_interval else MAX_TICK_INTERVAL
    return max(3 * float(interval), 30.0)


def lock_holder(redis_client: Any) -> LockHolder | None:
    """Who holds the beat lock, or None."""
    data = _read_json(redis_client, LOCK_KEY)
    return None if data is None else LockHolder.from_json(data)


def break_lock(redis_client: Any, holder: LockHolder) -> bool:
    """Remove the lock (and heartbeat) of `holder`, only if it still holds it: for a killed beat."""
    raw = redis_client.get(LOCK_KEY)
    data = _loads(raw) if raw is not None else None
    if data is None or LockHolder.from_json(data) != holder:
        return False
    removed = bool(redis_client.eval(_COMPARE_AND_DELETE, 1, LOCK_KEY, raw))
    heartbeat = read_heartbeat(redis_client)
    if heartbeat and heartbeat.token == holder.token:
        redis_client.delete(HEARTBEAT_KEY)
    return removed


def machine_id() -> str:
    """Where a pid means this process table: the host name, the kernel's boot id and the pid namespace.

    Two containers with one hostname differ in their pid namespace (or boot id), so a beat in one never
    judges the other's pid. Without /proc (not Linux) it is the host name alone.
    """
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return "/".join(parts)


def holder_is_dead(holder: LockHolder) -> bool:
    """True when the holder ran on this machine (see machine_id) and its pid is gone or was reused
    after it took the lock. A holder elsewhere, or one that does not say where, is never judged dead:
    its lock expires by itself."""
    if not holder.machine or holder.machine != machine_id():
        return False
    import psutil

    try:
        process = psutil.Process(int(holder.pid or 0))
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        acquired = datetime.fromisoformat(holder.acquired_at).timestamp() if holder.acquired_at else None
        return acquired is not None and process.create_time() > acquired + 1.0
    except (psutil.NoSuchProcess, ValueError):
        return True
    except psutil.AccessDenied:
        return False


def _loads(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_json(redis_client: Any, key: str) -> dict[str, Any] | None:
    raw = redis_client.get(key)
    return None if raw is None else _loads(raw)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _whole_seconds(moment: datetime) -> datetime:
    """Rounded to the nearest second (an estimate of 23:59:59.99998 means midnight)."""
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)


def __getattr__(name: str) -> Any:
    # Celery resolves "cars_bot.beat:LockedScheduler" by attribute: load the scheduler (and celery.beat) then.
    if name == "LockedScheduler":
        from cars_bot.beat_scheduler import LockedScheduler

        return LockedScheduler
    raise AttributeError(name)
