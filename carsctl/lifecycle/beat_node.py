"""Beat: start it unless another beat holds this broker's lock, stop it, report its heartbeat."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.lifecycle.node_control import (
    clean_up,
    failure,
    node_condition,
    not_running,
    prepare,
    spawn,
    status_row,
    stop_nodes,
)
from carsctl.lifecycle.node_specs import (
    COLD_TIMEOUT,
    NOT_RESPONDING,
    NOT_RUNNING,
    RUNNING,
    START_TIMEOUT,
    Progress,
    beat_command,
    beat_spec,
    say,
)
from carsctl.process import supervise
from carsctl.process.nodes import NodeState, load_node, remembered_node, run_dir

if TYPE_CHECKING:
    from cars_bot.config import Settings


def _broker_redis(settings: Settings) -> Any:
    """A redis-py client on the broker (None when the broker is not Redis)."""
    from cars_bot.broker import is_redis_url
    from carsctl.health.connectivity import redis_client

    if not is_redis_url(settings.broker_url):
        return None
    return redis_client(settings.broker_url, settings.broker_connect_timeout)


def _lock_conflict(client: Any) -> dict[str, Any] | None:
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
               progress: Progress | None = None) -> dict[str, Any]:
    """Start beat unless it runs; refuse when another beat holds this broker's lock (any host, any home).

    Ready when beat's heartbeat in Redis carries its pid. "state" is "started", "already-running",
    "refused" (with the holder) or "failed" (with "log_tail").
    """
    with supervise.exclusive(run_dir(settings) / "beat.lock"):
        return _start_beat_locked(settings, beat_spec(settings, loglevel), timeout, progress)


def _start_beat_locked(settings: Settings, spec: NodeState, timeout: float,
                       progress: Progress | None) -> dict[str, Any]:
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
        return {"name": "beat", "state": "refused", "holder": holder, "heartbeat_age_seconds": age,
                "error": f"another beat runs against this broker: {holder.get('hostname')} pid {holder.get('pid')}"
                         + (f", last tick {age:.0f}s ago" if age is not None else "")}
    spawned = spawn(settings, spec, beat_command(spec))
    return _wait_beat_ready(settings, spec, spawned, client, timeout)


def _wait_beat_ready(settings: Settings, spec: NodeState, spawned: supervise.Spawned, client: Any,
                     timeout: float) -> dict[str, Any]:
    from cars_bot.beat import read_heartbeat

    began = time.monotonic()
    watcher = supervise.LogWatcher(Path(spec.logfile), spawned.log_offset)
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            clean_up(settings, spec)
            return failure(settings, spec, spawned, f"exited with status {code} during start-up")
        ready = (read_heartbeat(client) or {}).get("pid") == spawned.pid if client is not None \
            else watcher.saw(b"beat: Starting...")
        if ready:
            return {"name": "beat", "hostname": spec.hostname, "state": "started", "pid": spawned.pid,
                    "logfile": spec.logfile, "seconds": round(time.monotonic() - began, 3)}
        time.sleep(supervise.POLL_INTERVAL)
    failed = failure(settings, spec, spawned, f"wrote no heartbeat within {timeout:g}s; stopped it")
    supervise.stop_processes([supervise.StopTarget("beat", spawned.pid)], timeout=10, cold_timeout=5, force=True)
    clean_up(settings, spec)
    return failed


def stop_beat(settings: Settings, *, timeout: float = 30.0, cold_timeout: float = COLD_TIMEOUT,
              force: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Stop beat (it releases its lock); after a SIGKILL the lock it left is removed too."""
    state = load_node(settings, "beat") or beat_spec(settings)
    result = stop_nodes(settings, [state], timeout=timeout, cold_timeout=cold_timeout, force=force,
                        progress=progress)[0]
    client = _broker_redis(settings) if result["outcome"] != supervise.STILL_RUNNING else None
    if client is not None and state.pid:
        try:
            _lock_conflict(client)  # clears the lock of our beat if it could not release it itself
        except Exception:  # noqa: BLE001 - the lock expires by itself
            pass
    return result


def beat_status(settings: Settings) -> dict[str, Any]:
    """Beat's process, its heartbeat (last tick, each periodic task's last and next run) and the lock."""
    from cars_bot.beat import heartbeat_age, lock_holder, read_heartbeat, stale_after
    from carsctl.health.connectivity import check_broker

    state = load_node(settings, "beat") or remembered_node(settings, "beat") or beat_spec(settings)
    condition = node_condition(state) if state.pid and not state.stopped_at else supervise.DEAD
    check_broker(settings)
    client = _broker_redis(settings)
    heartbeat = read_heartbeat(client) if client is not None else None
    holder = lock_holder(client) if client is not None else None
    age = heartbeat_age(heartbeat)
    age = round(age, 1) if age is not None else None
    limit = stale_after(heartbeat)
    ours = heartbeat is not None and heartbeat.get("pid") == state.pid \
        and heartbeat.get("hostname") == socket.gethostname()
    if condition == supervise.ALIVE:
        ticking = ours and age is not None and age <= limit
        status = RUNNING if ticking or client is None else NOT_RESPONDING
        note = "" if status == RUNNING else (f"last tick {age:.0f}s ago" if ours else "no heartbeat from it")
    elif state.pid and not state.stopped_at:
        verdict = not_running(settings, state, condition)
        status, note = verdict["status"], verdict["note"]
    else:
        status, note = NOT_RUNNING, "stopped" if state.stopped_at else "never started"
    if status != RUNNING and heartbeat and not ours:
        note += f"; a beat runs elsewhere: {heartbeat.get('hostname')} pid {heartbeat.get('pid')}"
    row = status_row(state, status, note.strip("; "))
    row.update(heartbeat_age_seconds=age, stale_after_seconds=limit, lock_holder=holder,
               tick_at=(heartbeat or {}).get("tick_at"), entries=(heartbeat or {}).get("entries", {}))
    return row
