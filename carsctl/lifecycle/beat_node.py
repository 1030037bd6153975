"""Beat: start it unless another beat holds this broker's lock, stop it, report its heartbeat."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.lifecycle.node_control import (
    clean_up,
    failure,
    node_condition,
    not_running,
    prepare,
    spawn,
    stop_nodes,
)
from carsctl.lifecycle.node_results import (
    NodeStatus,
    NodeStatusRow,
    StartResult,
    StartState,
    StopOutcome,
    StopResult,
)
from carsctl.lifecycle.node_specs import (
    COLD_TIMEOUT,
    START_TIMEOUT,
    Progress,
    beat_command,
    beat_spec,
    say,
)
from carsctl.process import supervise
from carsctl.process.nodes import NodeState, load_node, remembered_node, run_dir
from carsctl.process.supervise import Condition

if TYPE_CHECKING:
    from cars_bot.beat import EntryRuns, LockHolder
    from cars_bot.config import Settings


@dataclass(frozen=True, slots=True)
class BeatStatus(NodeStatusRow):
    """Beat's status row plus its heartbeat (as cars_bot.beat reads it) and the holder of the lock."""

    heartbeat_age_seconds: float | None = None
    stale_after_seconds: float | None = None
    lock_holder: LockHolder | None = None
    tick_at: str | None = None
    entries: dict[str, EntryRuns] = field(default_factory=dict)  # periodic task -> last/next run


def _broker_redis(settings: Settings) -> Any:
    """A redis-py client on the broker (None when the broker is not Redis)."""
    from cars_bot.broker_urls import is_redis_url
    from carsctl.health.connectivity import redis_client

    if not is_redis_url(settings.broker_url):
        return None
    return redis_client(settings.broker_url, settings.broker_connect_timeout)


def _lock_conflict(client: Any) -> LockHolder | None:
    """The holder of the beat lock if it is a live beat other than ours (a dead local one is cleared)."""
    from cars_bot.beat import break_lock, holder_is_dead, lock_holder

    holder = lock_holder(client)
    if holder is None:
        return None
    if holder_is_dead(holder):
        break_lock(client, holder)
        return None
    return holder


def start_beat(settings: Settings, *, loglevel: str | None = None, timeout: float = START_TIMEOUT,
               progress: Progress | None = None) -> StartResult:
    """Start beat unless it runs; refuse when another beat holds this broker's lock (any host, any home).

    Ready when beat's heartbeat in Redis carries its pid. The state is STARTED, ALREADY_RUNNING,
    REFUSED (with the holder) or FAILED (with the log tail).
    """
    with supervise.exclusive(run_dir(settings) / "beat.lock"):
        return _start_beat_locked(settings, beat_spec(settings, loglevel), timeout, progress)


def _start_beat_locked(settings: Settings, spec: NodeState, timeout: float,
                       progress: Progress | None) -> StartResult:
    from carsctl.health.connectivity import check_broker

    result, removed = prepare(settings, spec)
    if result is not None:
        return result
    if removed:
        say(progress, f"beat: removed stale {', '.join(removed)}")
    check_broker(settings)
    client = _broker_redis(settings)
    holder = _lock_conflict(client) if client is not None else None
    if holder is not None:
        from cars_bot.beat import heartbeat_age, read_heartbeat

        age = heartbeat_age(read_heartbeat(client))
        return StartResult(name="beat", state=StartState.REFUSED, holder=holder, heartbeat_age_seconds=age,
                           error=f"another beat runs against this broker: {holder.hostname} pid "
                                 f"{holder.pid}" + (f", last tick {age:.0f}s ago" if age is not None else ""))
    spawned = spawn(settings, spec, beat_command(spec))
    return _wait_beat_ready(settings, spec, spawned, client, timeout)


def _wait_beat_ready(settings: Settings, spec: NodeState, spawned: supervise.Spawned, client: Any,
                     timeout: float) -> StartResult:
    from cars_bot.beat import read_heartbeat

    began = time.monotonic()
    watcher = supervise.LogWatcher(Path(spec.logfile), spawned.log_offset)
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            clean_up(settings, spec)
            return failure(settings, spec, spawned, f"exited with status {code} during start-up")
        ready = getattr(read_heartbeat(client), "pid", None) == spawned.pid if client is not None \
            else watcher.saw(b"beat: Starting...")
        if ready:
            return StartResult(name="beat", hostname=spec.hostname, state=StartState.STARTED, pid=spawned.pid,
                               logfile=spec.logfile, seconds=round(time.monotonic() - began, 3))
        time.sleep(supervise.POLL_INTERVAL)
    failed = failure(settings, spec, spawned, f"wrote no heartbeat within {timeout:g}s; stopped it")
    supervise.stop_processes([supervise.StopTarget("beat", spawned.pid)], timeout=10, cold_timeout=5, force=True)
    clean_up(settings, spec)
    return failed


def stop_beat(settings: Settings, *, timeout: float = 30.0, cold_timeout: float = COLD_TIMEOUT,
              force: bool = False, progress: Progress | None = None) -> StopResult:
    """Stop beat (it releases its lock); after a SIGKILL the lock it left is removed too."""
    state = load_node(settings, "beat") or beat_spec(settings)
    result = stop_nodes(settings, [state], timeout=timeout, cold_timeout=cold_timeout, force=force,
                        progress=progress)[0]
    client = _broker_redis(settings) if result.outcome is not StopOutcome.STILL_RUNNING else None
    if client is not None and state.pid:
        try:
            _lock_conflict(client)  # clears the lock of our beat if it could not release it itself
        except Exception:  # noqa: BLE001 - the lock expires by itself
            pass
    return result


def beat_status(settings: Settings) -> BeatStatus:
    """Beat's process, its heartbeat (last tick, each periodic task's last and next run) and the lock."""
    from cars_bot.beat import heartbeat_age, lock_holder, read_heartbeat, stale_after
    from carsctl.health.connectivity import check_broker

    state = load_node(settings, "beat") or remembered_node(settings, "beat") or beat_spec(settings)
    condition = node_condition(state) if state.pid and not state.stopped_at else Condition.DEAD
    check_broker(settings)
    client = _broker_redis(settings)
    heartbeat = read_heartbeat(client) if client is not None else None
    holder = lock_holder(client) if client is not None else None
    age = heartbeat_age(heartbeat)
    age = round(age, 1) if age is not None else None
    limit = stale_after(heartbeat)
    ours = heartbeat is not None and heartbeat.pid == state.pid and heartbeat.hostname == socket.gethostname()
    if condition is Condition.ALIVE:
        ticking = ours and age is not None and age <= limit
        status = NodeStatus.RUNNING if ticking or client is None else NodeStatus.NOT_RESPONDING
        note = "" if status is NodeStatus.RUNNING else (f"last tick {age:.0f}s ago" if ours
                                                         else "no heartbeat from it")
    elif state.pid and not state.stopped_at:
        verdict = not_running(settings, state, condition)
        status, note = verdict.status, verdict.note
    else:
        status, note = NodeStatus.NOT_RUNNING, "stopped" if state.stopped_at else "never started"
    if status is not NodeStatus.RUNNING and heartbeat and not ours:
        note += f"; a beat runs elsewhere: {heartbeat.hostname} pid {heartbeat.pid}"
    return BeatStatus.of(state, status, note.strip("; "), heartbeat_age_seconds=age, stale_after_seconds=limit,
                         lock_holder=holder, tick_at=heartbeat.tick_at if heartbeat else None,
                         entries=dict(heartbeat.entries) if heartbeat else {})
