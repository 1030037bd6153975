"""The Telegram monitor as a node: `python -m cars_bot.monitor` detached with a pidfile and a state
file, ready once its heartbeat says it listens, stopped with SIGTERM (it finishes the message or
album in hand and saves its position), and its status read from the heartbeat.

Status exit codes, as the worker's: 0 running (alive, listening, heartbeat fresh), 3 not running
(or not configured), 4 alive but not listening or its heartbeat is stale, 5 stale pidfile, 69 alive
but Telegram is unreachable (it is reconnecting).
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carsctl.errors import UsageError
from carsctl.lifecycle.node_control import clean_up, failure, node_condition, not_running, prepare, spawn, stop_nodes
from carsctl.lifecycle.node_results import NodeStatus, NodeStatusRow, StartResult, StartState, StopResult
from carsctl.lifecycle.node_specs import COLD_TIMEOUT, LOGLEVELS, START_TIMEOUT, Progress, say
from carsctl.process import supervise
from carsctl.process.nodes import NodeState, load_node, pidfile_path, remembered_node, run_dir
from carsctl.process.supervise import Condition

if TYPE_CHECKING:
    from cars_bot.config import Settings

NAME = "monitor"
#: A heartbeat older than this many refresh intervals (at least STALE_FLOOR seconds) is stale.
STALE_INTERVALS = 3
STALE_FLOOR = 30.0
UNREACHABLE_EXIT = 69


def monitor_configured(settings: Settings) -> bool:
    from cars_bot.monitor.client import monitor_configured as configured

    return configured(settings)


def not_configured_line() -> str:
    from cars_bot.monitor.client import NOT_CONFIGURED

    return NOT_CONFIGURED


def monitor_spec(settings: Settings, loglevel: str | None = None) -> NodeState:
    """The monitor's state: one per home, logging to `logs/monitor.log`."""
    base = load_node(settings, NAME) or remembered_node(settings, NAME)
    level = (loglevel or (base.loglevel if base else "info")).lower()
    if level not in LOGLEVELS:
        raise UsageError(f"unknown log level {loglevel!r}", hint=f"levels: {', '.join(LOGLEVELS)}")
    return NodeState(name=NAME, hostname=f"{NAME}@{socket.gethostname()}", kind=NAME, loglevel=level,
                     logfile=str(settings.log_dir / "monitor.log"), pidfile=str(pidfile_path(settings, NAME)))


def monitor_command(state: NodeState, *, detached: bool = True) -> list[str]:
    """`python -m cars_bot.monitor` (with its pidfile when detached; it logs to LOG_DIR/monitor.log)."""
    command = [sys.executable, "-m", "cars_bot.monitor", "--loglevel", state.loglevel]
    return [*command, "--pidfile", state.pidfile] if detached else command


def start_monitor(settings: Settings, *, loglevel: str | None = None, timeout: float = START_TIMEOUT,
                  progress: Progress | None = None) -> StartResult:
    """Start the monitor unless it runs; ready when its heartbeat (with its pid) says it listens.

    UsageError (exit 2) without the three Telegram credentials, or on the publisher's session.
    """
    from cars_bot.monitor.client import session_problem

    problem = session_problem(settings)
    if problem is not None:
        raise UsageError(problem)
    with supervise.exclusive(run_dir(settings) / "monitor.lock"):
        spec = monitor_spec(settings, loglevel)
        result, removed = prepare(settings, spec)
        if result is not None:
            return result
        if removed:
            say(progress, f"monitor: removed stale {', '.join(removed)}")
        return _wait_listening(settings, spec, spawn(settings, spec, monitor_command(spec)), timeout)


def _wait_listening(settings: Settings, spec: NodeState, spawned: supervise.Spawned, timeout: float) -> StartResult:
    from cars_bot.monitor.heartbeat import ListenState, heartbeat_path, read_heartbeat

    began = time.monotonic()
    path = heartbeat_path(settings)
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            clean_up(settings, spec)
            return failure(settings, spec, spawned, f"exited with status {code} during start-up")
        beat = read_heartbeat(path)
        if beat is not None and beat.pid == spawned.pid and beat.state is ListenState.LISTENING:
            return StartResult(name=NAME, hostname=spec.hostname, state=StartState.STARTED, pid=spawned.pid,
                               logfile=spec.logfile, seconds=round(time.monotonic() - began, 3))
        time.sleep(supervise.POLL_INTERVAL)
    failed = failure(settings, spec, spawned, f"was not listening within {timeout:g}s; stopped it")
    supervise.stop_processes([supervise.StopTarget(NAME, spawned.pid)], timeout=20, cold_timeout=5, force=True)
    clean_up(settings, spec)
    return failed


def stop_monitor(settings: Settings, *, timeout: float = 30.0, cold_timeout: float = COLD_TIMEOUT,
                 force: bool = False, progress: Progress | None = None) -> StopResult:
    """SIGTERM the monitor and wait (see carsctl.process.supervise.stop_processes for the escalation)."""
    state = load_node(settings, NAME) or monitor_spec(settings)
    return stop_nodes(settings, [state], timeout=timeout, cold_timeout=cold_timeout, force=force,
                      progress=progress)[0]


@dataclass(frozen=True, slots=True)
class MonitorStatus(NodeStatusRow):
    """The monitor's status row plus what its heartbeat says (channels, last message, last catch-up)."""

    configured: bool = True
    listen_state: str | None = None  # connecting / listening / reconnecting / stopping / stopped
    heartbeat_age_seconds: float | None = None
    channels: tuple[str, ...] = ()
    failed_channels: dict[str, str] = field(default_factory=dict)
    last_message_at: str | None = None
    last_catch_up_at: str | None = None
    stored: int | None = None
    duplicates: int | None = None
    flood_waits: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        unreachable = self.status is NodeStatus.NOT_RESPONDING and self.listen_state == "reconnecting"
        object.__setattr__(self, "exit_code", UNREACHABLE_EXIT if unreachable else self.status.exit_code)


def monitor_status(settings: Settings) -> MonitorStatus:
    """The monitor's process and heartbeat (see the module docstring for the exit codes)."""
    from datetime import UTC, datetime

    from cars_bot.monitor.heartbeat import ListenState, heartbeat_path, read_heartbeat

    state = load_node(settings, NAME) or remembered_node(settings, NAME) or monitor_spec(settings)
    if not monitor_configured(settings):
        return MonitorStatus.of(state, NodeStatus.NOT_RUNNING, not_configured_line(), configured=False)
    condition = node_condition(state) if state.pid and not state.stopped_at else Condition.DEAD
    beat = read_heartbeat(heartbeat_path(settings))
    ours = beat is not None and beat.pid == state.pid
    age = None
    if beat is not None:
        age = round((datetime.now(UTC) - datetime.fromisoformat(beat.updated_at)).total_seconds(), 1)
    if condition is Condition.ALIVE:
        limit = max(STALE_FLOOR, STALE_INTERVALS * (beat.interval if beat else 60))
        if ours and beat is not None and beat.state is ListenState.LISTENING and age is not None and age <= limit:
            status, note = NodeStatus.RUNNING, ""
        else:
            status = NodeStatus.NOT_RESPONDING
            note = ("no heartbeat from it" if not ours or beat is None
                    else f"heartbeat {age:.0f}s old" if age is not None and age > limit else f"{beat.state}")
    elif state.pid and not state.stopped_at:
        verdict = not_running(settings, state, condition)
        status, note = verdict.status, verdict.note
    else:
        status, note = NodeStatus.NOT_RUNNING, "stopped" if state.stopped_at else "never started"
    shown = beat if ours else None
    return MonitorStatus.of(
        state, status, note, listen_state=str(shown.state) if shown else None,
        heartbeat_age_seconds=age if shown else None, channels=shown.channels if shown else (),
        failed_channels=dict(shown.failed) if shown else {},
        last_message_at=(beat.last_message_at if beat else None),
        last_catch_up_at=(beat.last_catch_up_at if beat else None),
        stored=shown.stored if shown else None, duplicates=shown.duplicates if shown else None,
        flood_waits=shown.flood_waits if shown else None, error=shown.error if shown else None)

