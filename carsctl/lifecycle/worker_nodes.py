"""Worker nodes: start (detached or in the foreground), restart, status.

Stopping is shared with beat and Flower (:func:`carsctl.lifecycle.node_control.stop_nodes`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from carsctl.errors import OperationFailed, UsageError
from carsctl.lifecycle.node_control import (
    clean_up,
    node_condition,
    not_running,
    ping_nodes,
    prepare,
    spawn,
    stop_nodes,
    wait_ready,
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
    PING_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    AppLoader,
    Progress,
    check_node_name,
    default_app,
    now_iso,
    say,
    worker_command,
    worker_spec,
)
from carsctl.process import supervise
from carsctl.process.nodes import (
    RESERVED_NAMES,
    NodeState,
    list_nodes,
    load_node,
    node_hostname,
    pidfile_path,
    remembered_node,
    remembered_nodes,
    run_dir,
    save_node,
    worker_logfile,
)
from carsctl.process.supervise import Condition

if TYPE_CHECKING:
    from cars_bot.broker import OrphansRestored
    from cars_bot.config import Settings

#: Seconds each live worker has to say which messages it holds before orphans are restored.
ORPHAN_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class RestartResult:
    """A restart: how each node stopped, then how those that stopped started again."""

    stopped: tuple[StopResult, ...]
    started: tuple[StartResult, ...]


def start_workers(settings: Settings, specs: Sequence[NodeState], *, timeout: float = START_TIMEOUT,
                  app_loader: AppLoader = default_app, progress: Progress | None = None) -> list[StartResult]:
    """Start the nodes not yet running, together; return one result per node, in order.

    A result's state is STARTED (with pid, seconds until it answered a ping), ALREADY_RUNNING (nothing
    changed) or FAILED (with the error and the log tail of this start). Stale pidfiles of the nodes are
    removed first and listed in `removed_stale`.
    """
    with ExitStack() as locks:
        for name in sorted({spec.name for spec in specs}):
            locks.enter_context(supervise.exclusive(run_dir(settings) / f"{name}.lock"))
        return _start_workers_locked(settings, specs, timeout, app_loader, progress)


def _start_workers_locked(settings: Settings, specs: Sequence[NodeState], timeout: float, app_loader: AppLoader,
                          progress: Progress | None) -> list[StartResult]:
    from carsctl.health.connectivity import check_broker

    results: dict[str, StartResult] = {}
    to_start: list[tuple[NodeState, list[str]]] = []
    for spec in specs:
        result, removed = prepare(settings, spec)
        if removed:
            say(progress, f"{spec.name}: removed stale {', '.join(removed)}")
        if result is not None:
            results[spec.name] = result
        else:
            to_start.append((spec, removed))
    if to_start:
        check_broker(settings)
        spawned = {spec.name: (spec, spawn(settings, spec, worker_command(spec))) for spec, _ in to_start}
        say(progress, f"waiting for {', '.join(s.hostname for s, _ in spawned.values())} to answer a ping")
        results.update(wait_ready(settings, spawned, timeout, app_loader))
        for spec, removed in to_start:
            results[spec.name] = replace(results[spec.name], removed_stale=tuple(removed))
            if results[spec.name].state is StartState.FAILED:
                clean_up(settings, spec)
        if any(removed for _, removed in to_start):
            restore_orphaned_messages(app_loader, progress)
    return [results[spec.name] for spec in specs]


def restore_orphaned_messages(app_loader: AppLoader = default_app, progress: Progress | None = None,
                              timeout: float = ORPHAN_TIMEOUT) -> OrphansRestored | None:
    """A node carsctl started died (its stale pidfile was just removed): give its unacked messages back
    now rather than after the 2 h visibility timeout. Only messages no live worker reports holding are
    restored, and only when every live worker answered. Never fails the start: None if the broker
    could not be asked (the periodic safety net retries within minutes).
    """
    from cars_bot.broker import restore_orphans

    try:
        outcome = restore_orphans(app_loader(), timeout=timeout)
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        say(progress, f"orphaned messages not restored: {type(error).__name__}: {error}")
        return None
    if not outcome.answered:
        say(progress, "orphaned messages not restored: a worker did not answer (the safety net will retry)")
    elif outcome.restored:
        say(progress, f"restored {len(outcome.restored)} unacked message(s) orphaned by a dead worker")
    return outcome


def start_foreground(settings: Settings, spec: NodeState) -> None:
    """Replace this process with the node's `celery worker`, logging to the terminal (never returns).

    For systemd, containers and debugging: signals reach Celery directly. The state file records this
    pid (exec keeps it) so `worker status` and `worker stop` work from another terminal.
    """
    import os

    import psutil

    from carsctl.health.connectivity import check_broker

    result, _removed = prepare(settings, spec)
    if result is not None:
        raise OperationFailed(f"{spec.hostname} is already running (pid {result.pid})")
    check_broker(settings)
    from cars_bot.private_files import PRIVATE_UMASK, private_dir

    private_dir(run_dir(settings))  # and the state directory, 0700
    os.umask(PRIVATE_UMASK)  # what the worker creates (SQLite, outbox, logs) is the owner's only
    command = worker_command(spec, detached=False)
    spec.logfile, spec.cmdline, spec.cwd = "", command, str(Path.cwd())
    spec.pid, spec.create_time, spec.started_at = os.getpid(), psutil.Process().create_time(), now_iso()
    save_node(settings, spec)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, dict(os.environ))


def worker_targets(settings: Settings, names: Sequence[str]) -> list[NodeState]:
    """The worker states named (running or remembered), or every started worker when none is named."""
    if not names:
        return list_nodes(settings)
    states = []
    for name in names:
        name = check_node_name(name)
        state = load_node(settings, name) or remembered_node(settings, name)
        if state is None:
            pidfile = pidfile_path(settings, name)
            pid = supervise.read_pidfile(pidfile)
            state = NodeState(name=name, hostname=node_hostname(name), pid=pid, pidfile=str(pidfile),
                              logfile=str(worker_logfile(settings, name)))
        states.append(state)
    return states


def restart_workers(settings: Settings, names: Sequence[str], *, timeout: float = STOP_TIMEOUT,
                    cold_timeout: float = COLD_TIMEOUT, force: bool = False, start_timeout: float = START_TIMEOUT,
                    app_loader: AppLoader = default_app, progress: Progress | None = None) -> RestartResult:
    """Stop the nodes, then start them again with the options they ran with (nothing to repeat)."""
    states = worker_targets(settings, names) or remembered_nodes(settings)
    if not states:
        raise UsageError("no worker nodes to restart", hint="start one with `carsctl worker start`")
    unknown = [s.name for s in states if not s.queues]
    if unknown:
        raise UsageError(f"no remembered options for {', '.join(unknown)}", hint="use `carsctl worker start`")
    specs = [worker_spec(settings, s.name) for s in states]  # read before the stop moves the state files
    stopped = stop_nodes(settings, states, timeout=timeout, cold_timeout=cold_timeout, force=force,
                         app_loader=app_loader, progress=progress)
    blocked = {r.name for r in stopped if r.outcome is StopOutcome.STILL_RUNNING}
    started = start_workers(settings, [s for s in specs if s.name not in blocked], timeout=start_timeout,
                            app_loader=app_loader, progress=progress)
    if any(r.outcome in (StopOutcome.STALE, StopOutcome.KILLED) for r in stopped):
        restore_orphaned_messages(app_loader, progress)  # it had died, or was killed: what it held
    return RestartResult(tuple(stopped), tuple(started))


def worker_status(settings: Settings, names: Sequence[str] = (), *, timeout: float = PING_TIMEOUT,
                  app_loader: AppLoader = default_app) -> list[NodeStatusRow]:
    """Each node's status (see the module docstring), combining its process with a ping addressed to it.

    Read-only: stale pidfiles are reported here and removed by start/stop.
    """
    from carsctl.health.connectivity import check_broker

    states = worker_targets(settings, names)
    if not names:
        known = {s.name for s in states}
        for pidfile in sorted(run_dir(settings).glob("*.pid")) if run_dir(settings).is_dir() else []:
            if pidfile.stem not in known and pidfile.stem not in RESERVED_NAMES:
                states.append(worker_targets(settings, [pidfile.stem])[0])
    conditions = {s.name: node_condition(s) if s.pid else Condition.DEAD for s in states}
    alive = [s.hostname for s in states if conditions[s.name] is Condition.ALIVE]
    answered: set[str] = set()
    if alive:
        check_broker(settings)
        answered = ping_nodes(app_loader(), alive, timeout)
    rows = []
    for state in states:
        if conditions[state.name] is Condition.ALIVE:
            ok = state.hostname in answered
            rows.append(NodeStatusRow.of(state, NodeStatus.RUNNING if ok else NodeStatus.NOT_RESPONDING,
                                         "" if ok else f"no reply to a ping within {timeout:g}s"))
        elif state.pid and not state.stopped_at:
            verdict = not_running(settings, state, conditions[state.name])
            rows.append(NodeStatusRow.of(state, verdict.status, verdict.note))
        else:
            rows.append(NodeStatusRow.of(state, NodeStatus.NOT_RUNNING,
                                         "stopped" if state.stopped_at else "never started"))
    return rows
