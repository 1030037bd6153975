"""The process side of any node (worker, beat, Flower): is it ours and alive, clean up after it,
spawn it, wait until it answers, stop it.

Process mechanics (detached spawn, recognising our own pid, signal escalation, log tails) are in
:mod:`carsctl.process.supervise`; node state files in :mod:`carsctl.process.nodes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.errors import OperationFailed
from carsctl.lifecycle.node_results import (
    NodeStatus,
    StartResult,
    StartState,
    StatusVerdict,
    StopOutcome,
    StopResult,
)
from carsctl.lifecycle.node_specs import (
    COLD_TIMEOUT,
    STOP_TIMEOUT,
    AppLoader,
    Progress,
    default_app,
    now_iso,
    say,
)
from carsctl.process import supervise
from carsctl.process.nodes import (
    NodeState,
    forget_node,
    load_node,
    pidfile_path,
    run_dir,
    save_node,
    stopped_dir,
)
from carsctl.process.supervise import Condition

if TYPE_CHECKING:
    from cars_bot.config import Settings


def _markers(state: NodeState) -> list[str]:
    """Strings the command line of our process contains (the pidfile path is unique per home and node)."""
    if state.kind == "flower":
        return ["celery", "flower", f"--port={state.extra.get('port')}"]
    if state.kind == "monitor":
        return ["cars_bot.monitor", state.pidfile]
    return ["celery", "beat" if state.kind == "beat" else "worker", state.pidfile]


def node_condition(state: NodeState) -> Condition:
    """ALIVE / DEAD / FOREIGN for the process a state file points at."""
    return supervise.process_condition(state.pid, state.create_time, _markers(state))


def _stale_reason(state: NodeState, condition: Condition) -> str:
    if condition is Condition.FOREIGN:
        return f"pid {state.pid} is not ours ({supervise.describe_process(state.pid or 0)}): pid reused"
    return f"pid {state.pid} is dead"


def clean_up(settings: Settings, state: NodeState) -> list[str]:
    """Drop a node's pidfile and state (options remembered); return the files removed."""
    removed = []
    pidfile = Path(state.pidfile) if state.pidfile else pidfile_path(settings, state.name)
    if pidfile.exists():
        pidfile.unlink(missing_ok=True)
        removed.append(str(pidfile))
    if load_node(settings, state.name) is not None:
        forget_node(settings, state, now_iso())
        removed.append(f"state of {state.name}")
    return removed


def not_running(settings: Settings, state: NodeState, condition: Condition) -> StatusVerdict:
    """A node whose process is gone or not ours: crashed when its traces say so (an error logged last,
    or its pidfile left without a logged shutdown: SIGKILL, OOM), a stale pidfile when the pid was
    reused, not-running when it exited cleanly on its own."""
    from carsctl.process.exit_reason import diagnose

    if condition is Condition.FOREIGN:
        return StatusVerdict(NodeStatus.STALE, _stale_reason(state, condition))
    pidfile_left = bool(state.pidfile) and Path(state.pidfile).exists()
    diagnosis = diagnose(state.logfile, pidfile_left)
    if diagnosis.crashed:
        return StatusVerdict(NodeStatus.CRASHED, f"pid {state.pid} is dead, {diagnosis.reason}")
    if pidfile_left:
        return StatusVerdict(NodeStatus.STALE, _stale_reason(state, condition))
    return StatusVerdict(NodeStatus.NOT_RUNNING, diagnosis.reason)


def ping_nodes(app: Any, hostnames: Sequence[str], timeout: float) -> set[str]:
    """The node names that answered a ping addressed to them (fresh connection; returns early)."""
    if not hostnames:
        return set()
    with app.connection_for_write() as connection:
        replies = app.control.ping(destination=list(hostnames), timeout=timeout, connection=connection) or []
    return {name for reply in replies for name in reply}


def failure(settings: Settings, state: NodeState, spawned: supervise.Spawned, reason: str) -> StartResult:
    """A failed start: the reason and the lines this start wrote to the log (secrets masked)."""
    from cars_bot.secret_masking import mask_secrets_in

    tail = supervise.log_tail(Path(state.logfile), spawned.log_offset)
    return StartResult(name=state.name, hostname=state.hostname, state=StartState.FAILED, pid=spawned.pid,
                       logfile=state.logfile, error=reason,
                       log_tail=tuple(mask_secrets_in(line, settings) for line in tail))


def wait_ready(settings: Settings, spawned: dict[str, tuple[NodeState, supervise.Spawned]], timeout: float,
                app_loader: AppLoader) -> dict[str, StartResult]:
    """Wait until each node answers a ping addressed to it; a node that dies or times out fails.

    The log's "<node> ready." line tells when to ping (a ping to a node not yet consuming its control
    queue is lost, and waits out its whole timeout); nodes logging above INFO are pinged blindly.
    """
    began = time.monotonic()
    pending = dict(spawned)
    watchers = {n: supervise.LogWatcher(Path(s.logfile), sp.log_offset) for n, (s, sp) in spawned.items()}
    results: dict[str, StartResult] = {}
    app = app_loader()  # import Celery while the workers boot
    last_blind = 0.0
    while pending:
        for name, (state, proc) in list(pending.items()):
            code = proc.process.poll()
            if code is not None:
                results[name] = failure(settings, state, proc, f"exited with status {code} during start-up")
                del pending[name]
        if not pending or time.monotonic() - began > timeout:
            break
        seen = [n for n in pending if watchers[n].saw(f"{pending[n][0].hostname} ready.".encode())]
        blind = [n for n in pending if n not in seen and pending[n][0].loglevel not in ("debug", "info")]
        if not seen and blind and time.monotonic() - last_blind > 0.5:
            seen, last_blind = blind, time.monotonic()
        if not seen:
            time.sleep(supervise.POLL_INTERVAL)
            continue
        answered = ping_nodes(app, [pending[n][0].hostname for n in seen], timeout=0.5)
        for name in seen:
            state, proc = pending[name]
            if state.hostname in answered:
                results[name] = StartResult(name=name, hostname=state.hostname, state=StartState.STARTED,
                                            pid=proc.pid, logfile=state.logfile,
                                            seconds=round(time.monotonic() - began, 3))
                del pending[name]
    for name, (state, proc) in pending.items():
        results[name] = failure(settings, state, proc, f"did not answer a ping within {timeout:g}s; stopped it")
        supervise.stop_processes([supervise.StopTarget(name, proc.pid)], timeout=10, cold_timeout=5, force=True)
    return results


def running_result(state: NodeState, url: str | None = None) -> StartResult:
    """The start result of a node that already runs (nothing changed)."""
    return StartResult(name=state.name, hostname=state.hostname, state=StartState.ALREADY_RUNNING, pid=state.pid,
                       logfile=state.logfile, queues=tuple(state.queues), url=url)


def prepare(settings: Settings, spec: NodeState) -> tuple[StartResult | None, list[str]]:
    """(result if the node already runs, stale files removed) before starting `spec`.

    A live process of ours behind the pidfile but without a state file (started by hand, or its state
    file was lost) is refused: carsctl cannot tell which options it runs with, and spawning next to it
    would leave two nodes under one name.
    """
    existing = load_node(settings, spec.name)
    removed: list[str] = []
    if existing is not None:
        condition = node_condition(existing)
        if condition is Condition.ALIVE:
            return running_result(existing), []
        removed = clean_up(settings, existing)
    pidfile = Path(spec.pidfile)
    if pidfile.exists():  # a pidfile without a state file: never signalled, only removed if not ours
        pid = supervise.read_pidfile(pidfile)
        if supervise.process_condition(pid, None, _markers(spec)) is Condition.ALIVE:
            raise OperationFailed(f"{spec.hostname} runs (pid {pid}) but carsctl has no state for it",
                                  hint=f"stop it with `kill -TERM {pid}`, then start it again")
        pidfile.unlink(missing_ok=True)
        removed.append(str(pidfile))
    return None, removed


def spawn(settings: Settings, spec: NodeState, command: list[str]) -> supervise.Spawned:
    """Spawn `command` for `spec` and record it in the node's state file (its remembered options go)."""
    from cars_bot.private_files import private_dir

    private_dir(run_dir(settings))  # and the state directory, 0700
    spawned = supervise.spawn_detached(command, Path(spec.logfile))
    spec.pid, spec.create_time, spec.started_at = spawned.pid, spawned.create_time, now_iso()
    spec.cmdline, spec.cwd = command, str(Path.cwd())
    save_node(settings, spec)
    (stopped_dir(settings) / f"{spec.name}.json").unlink(missing_ok=True)
    return spawned


def _active_tasks(app_loader: AppLoader, hostnames: Sequence[str]) -> dict[str, str]:
    """'N tasks running: name[id]...' per node, from one inspect addressed to them (best effort)."""
    try:
        app = app_loader()
        with app.connection_for_write() as connection:
            active = app.control.inspect(destination=list(hostnames), timeout=0.5, connection=connection).active()
    except Exception:  # noqa: BLE001 - only decoration for the progress lines
        return {}
    details = {}
    for hostname, tasks in (active or {}).items():
        if tasks:
            names = ", ".join(f"{t.get('name')}[{str(t.get('id'))[:8]}]" for t in tasks[:3])
            details[hostname] = f"{len(tasks)} task{'s' if len(tasks) > 1 else ''} running: {names}"
    return details


def stop_nodes(settings: Settings, states: Sequence[NodeState], *, timeout: float = STOP_TIMEOUT,
               cold_timeout: float = COLD_TIMEOUT, force: bool = False, app_loader: AppLoader = default_app,
               progress: Progress | None = None) -> list[StopResult]:
    """Stop nodes (workers, beat or Flower) together; one result per node, in order.

    A live process of ours is signalled (see supervise.stop_processes: warm, cold, killed or
    still-running); a pidfile of a dead or foreign pid is removed, never signalled (stale), and a node
    without a pid was not running.
    """
    results: dict[str, StopResult] = {}
    running: dict[str, NodeState] = {}
    for state in states:
        condition = node_condition(state) if state.pid else Condition.DEAD
        if condition is Condition.ALIVE:
            running[state.name] = state
            continue
        verdict = not_running(settings, state, condition) if state.pid else None
        pidfile_left = bool(state.pidfile) and Path(state.pidfile).exists()
        stale = verdict is not None and (verdict.status is NodeStatus.STALE
                                         or (verdict.status is NodeStatus.CRASHED and pidfile_left))
        removed = clean_up(settings, state)
        results[state.name] = StopResult(name=state.name, hostname=state.hostname, pid=state.pid,
                                         outcome=StopOutcome.STALE if stale else StopOutcome.NOT_RUNNING,
                                         note=verdict.note if verdict else "not running", removed_stale=tuple(removed))
    workers = [s.hostname for s in running.values() if s.kind == "worker"]
    details = _active_tasks(app_loader, workers) if workers else {}
    targets = [supervise.StopTarget(s.hostname, s.pid or 0, details.get(s.hostname, "")) for s in running.values()]
    if targets:
        say(progress, "stopping " + ", ".join(f"{t.key} (pid {t.pid}{'; ' + t.detail if t.detail else ''})"
                                                for t in targets))
    began = time.monotonic()
    outcomes = supervise.stop_processes(targets, timeout=timeout, cold_timeout=cold_timeout, force=force,
                                        progress=progress)
    for name, state in running.items():
        outcome = StopOutcome(outcomes[state.hostname])
        if outcome is not StopOutcome.STILL_RUNNING:
            clean_up(settings, state)
        results[name] = StopResult(name=name, hostname=state.hostname, pid=state.pid, outcome=outcome,
                                   seconds=round(time.monotonic() - began, 3))
    return [results[s.name] for s in states]
