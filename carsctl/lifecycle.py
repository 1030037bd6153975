"""Starting, stopping and checking the stack's processes: worker nodes, beat, Flower, and `up`/`down`.

Plain functions returning plain data (dicts and lists); the commands in `carsctl/commands/` render
them. Process mechanics (detached spawn, recognising our own pid, signal escalation, log tails) are in
:mod:`carsctl.supervise`; node state files in :mod:`carsctl.nodes`.

Every process is the real Celery command line, run as a direct child in its own session:
`sys.executable -m celery -A cars_bot.celery_app worker -n NAME@HOST ... --pidfile ... --logfile ...`,
with the CLI's own environment (REDIS_URL, DATABASE_URL, ... are inherited, never put on the command
line where `ps` would show them).

Status states and their exit codes (usable as a systemd/Kubernetes probe; the command exits with the
highest code among the nodes it reports):

| state            | exit | meaning                                                              |
|------------------|------|----------------------------------------------------------------------|
| running          | 0    | our process is alive and answers (worker: a ping addressed to its    |
|                  |      | node name; beat: its heartbeat in Redis is recent and is its own)    |
| not-running      | 3    | nothing runs (never started, stopped, or exited cleanly)             |
| not-responding   | 4    | our process is alive but does not answer / beat stopped ticking      |
| stale            | 5    | a pidfile whose pid is dead (a crash) or is not our process (reused) |
| (broker down)    | 69   | the broker cannot be reached, so the answer is unknown               |

Stop outcomes and their exit codes: 0 stopped gracefully (warm), or was not running / only a stale
pidfile was removed; 10 the warm shutdown timed out and a cold shutdown (SIGQUIT) ended it, running
tasks were cancelled and re-queued (acks_late); 11 it had to be killed (SIGKILL, only with --force);
1 still running after the cold shutdown and --force was not given (nothing was killed).
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl import supervise
from carsctl.errors import OperationFailed, UsageError
from carsctl.nodes import (
    RESERVED_NAMES,
    NodeState,
    forget_node,
    list_nodes,
    load_node,
    node_hostname,
    pidfile_path,
    remembered_node,
    remembered_nodes,
    run_dir,
    save_node,
    short_name,
    stopped_dir,
    worker_logfile,
)

if TYPE_CHECKING:
    from cars_bot.config import Settings

POOLS = ("prefork", "solo", "threads")
LOGLEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_NODE = "worker"
DEFAULT_CONCURRENCY = 4
DEFAULT_POOL = "prefork"
DEFAULT_LOGLEVEL = "info"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
COLD_TIMEOUT = 10.0
PING_TIMEOUT = 1.0
APP = "cars_bot.celery_app"

RUNNING, NOT_RUNNING, NOT_RESPONDING, STALE = "running", "not-running", "not-responding", "stale"
STATUS_EXIT = {RUNNING: 0, NOT_RUNNING: 3, NOT_RESPONDING: 4, STALE: 5}
STOP_EXIT = {supervise.WARM: 0, NOT_RUNNING: 0, STALE: 0, supervise.STILL_RUNNING: 1,
             supervise.COLD: 10, supervise.KILLED: 11}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

AppLoader = Callable[[], Any]
Progress = Callable[[str], None]


def default_app() -> Any:
    """The cars_bot Celery app (imports Celery)."""
    from cars_bot.celery_app import app

    return app


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def celery_command(*args: str) -> list[str]:
    """`python -m celery -A cars_bot.celery_app ARGS` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", APP, *args]


def exit_code_of(codes: Sequence[int]) -> int:
    """The exit code of a command over several nodes: the highest (0 when there is none)."""
    return max(codes, default=0)


# --- worker specs --------------------------------------------------------------------------------
def _queues(raw: Sequence[str] | None) -> list[str] | None:
    if raw is None:
        return None
    from cars_bot.config import QUEUES

    queues = [q.strip() for item in raw for q in item.split(",") if q.strip()]
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise UsageError(f"unknown queue {', '.join(unknown) or '(none)'}", hint=f"queues: {', '.join(QUEUES)}")
    return list(dict.fromkeys(queues))


def check_node_name(name: str) -> str:
    """A valid short node name (`ai` from `ai` or `ai@host`), or UsageError."""
    name = short_name(name)
    if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise UsageError(f"invalid node name {name!r}",
                         hint="letters, digits, '-', '_' or '.'; not beat, flower, monitor or stopped")
    return name


def _autoscale(raw: str | None) -> str | None:
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        high, low = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (int(parts[0]), 0)
    except ValueError:
        high = low = -1
    if len(parts) > 2 or high < 1 or not 0 <= low <= high:
        raise UsageError(f"--autoscale {raw!r} must be MAX,MIN with MAX >= MIN >= 0, e.g. 10,2")
    return f"{high},{low}"


def worker_spec(settings: Settings, name: str, *, queues: Sequence[str] | None = None,
                concurrency: int | None = None, pool: str | None = None, autoscale: str | None = None,
                loglevel: str | None = None, include: Sequence[str] | None = None) -> NodeState:
    """What a node will run with: the options given, else the ones it last ran with, else the defaults."""
    from cars_bot.config import QUEUES

    name = check_node_name(name)
    base = load_node(settings, name) or remembered_node(settings, name)
    if pool is not None and pool not in POOLS:
        raise UsageError(f"unknown pool {pool!r}", hint=f"pools: {', '.join(POOLS)}")
    if loglevel is not None and loglevel.lower() not in LOGLEVELS:
        raise UsageError(f"unknown log level {loglevel!r}", hint=f"levels: {', '.join(LOGLEVELS)}")
    given_include = [m.strip() for item in include or () for m in item.split(",") if m.strip()]
    return NodeState(
        name=name,
        hostname=node_hostname(name),
        queues=_queues(queues) or (base.queues if base else list(QUEUES)),
        concurrency=concurrency or (base.concurrency if base else DEFAULT_CONCURRENCY),
        pool=pool or (base.pool if base else DEFAULT_POOL),
        autoscale=_autoscale(autoscale) or (base.autoscale if base and autoscale is None else None),
        loglevel=(loglevel or (base.loglevel if base else DEFAULT_LOGLEVEL)).lower(),
        include=given_include or (base.include if base else []),
        logfile=str(worker_logfile(settings, name)),
        pidfile=str(pidfile_path(settings, name)),
    )


def parse_node_layout(specs: Sequence[str]) -> list[dict[str, Any]]:
    """`--node NAME[:QUEUES[:CONCURRENCY]]` values (e.g. `ai:ai_processing:2`) as worker_spec kwargs."""
    layout = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) > 3 or not parts[0]:
            raise UsageError(f"--node {spec!r} must be NAME[:QUEUES[:CONCURRENCY]], e.g. ai:ai_processing:2")
        entry: dict[str, Any] = {"name": parts[0]}
        if len(parts) > 1 and parts[1]:
            entry["queues"] = [parts[1]]
        if len(parts) > 2 and parts[2]:
            if not parts[2].isdigit() or int(parts[2]) < 1:
                raise UsageError(f"--node {spec!r}: the concurrency must be a positive integer")
            entry["concurrency"] = int(parts[2])
        layout.append(entry)
    return layout


def worker_command(state: NodeState, *, detached: bool = True) -> list[str]:
    """The `celery worker` command line of a node (with pidfile and logfile when detached).

    The node name is `NAME@%h`: Celery fills in `socket.gethostname()`, as `node_hostname` does.
    """
    command = celery_command("worker", "-n", f"{state.name}@%h", "-Q", ",".join(state.queues),
                             "-P", state.pool or DEFAULT_POOL, "-l", state.loglevel)
    if state.autoscale:
        command += ["--autoscale", state.autoscale]
    elif state.concurrency:
        command += ["-c", str(state.concurrency)]
    if state.include:
        command += ["-I", ",".join(state.include)]
    command += ["--pidfile", state.pidfile]
    if detached:
        command += ["--logfile", state.logfile]
    return command


def _markers(state: NodeState) -> list[str]:
    """Strings the command line of our process contains (the pidfile path is unique per home and node)."""
    if state.kind == "flower":
        return ["celery", "flower", f"--port={state.extra.get('port')}"]
    return ["celery", "beat" if state.kind == "beat" else "worker", state.pidfile]


def node_condition(state: NodeState) -> str:
    """supervise.ALIVE / DEAD / FOREIGN for the process a state file points at."""
    return supervise.process_condition(state.pid, state.create_time, _markers(state))


def _stale_reason(state: NodeState, condition: str) -> str:
    if condition == supervise.FOREIGN:
        return f"pid {state.pid} is not ours ({supervise.describe_process(state.pid or 0)}): pid reused"
    return f"pid {state.pid} is dead"


def _clean_up(settings: Settings, state: NodeState) -> list[str]:
    """Drop a node's pidfile and state (options remembered); return the files removed."""
    removed = []
    pidfile = Path(state.pidfile) if state.pidfile else pidfile_path(settings, state.name)
    if pidfile.exists():
        pidfile.unlink(missing_ok=True)
        removed.append(str(pidfile))
    if load_node(settings, state.name) is not None:
        forget_node(settings, state, _now())
        removed.append(f"state of {state.name}")
    return removed


def _not_running(settings: Settings, state: NodeState, condition: str) -> dict[str, Any]:
    """A node whose process is gone or not ours: a stale pidfile if Celery's pidfile is still there
    (a crash: SIGKILL, OOM) or the pid was reused; not-running if it exited cleanly on its own."""
    crashed = state.pidfile and Path(state.pidfile).exists()
    status = STALE if condition == supervise.FOREIGN or crashed else NOT_RUNNING
    note = _stale_reason(state, condition) if status == STALE else "exited (stopped outside carsctl)"
    return {"status": status, "note": note}


# --- readiness ----------------------------------------------------------------------------------
def ping_nodes(app: Any, hostnames: Sequence[str], timeout: float) -> set[str]:
    """The node names that answered a ping addressed to them (fresh connection; returns early)."""
    if not hostnames:
        return set()
    with app.connection_for_write() as connection:
        replies = app.control.ping(destination=list(hostnames), timeout=timeout, connection=connection) or []
    return {name for reply in replies for name in reply}


def _failure(settings: Settings, state: NodeState, spawned: supervise.Spawned, reason: str) -> dict[str, Any]:
    from cars_bot.config import mask_secrets_in

    tail = supervise.log_tail(Path(state.logfile), spawned.log_offset)
    return {"name": state.name, "hostname": state.hostname, "state": "failed", "pid": spawned.pid,
            "logfile": state.logfile, "error": reason,
            "log_tail": [mask_secrets_in(line, settings) for line in tail]}


def _wait_ready(settings: Settings, spawned: dict[str, tuple[NodeState, supervise.Spawned]], timeout: float,
                app_loader: AppLoader) -> dict[str, dict[str, Any]]:
    """Wait until each node answers a ping addressed to it; a node that dies or times out fails.

    The log's "<node> ready." line tells when to ping (a ping to a node not yet consuming its control
    queue is lost, and waits out its whole timeout); nodes logging above INFO are pinged blindly.
    """
    began = time.monotonic()
    pending = dict(spawned)
    watchers = {n: supervise.LogWatcher(Path(s.logfile), sp.log_offset) for n, (s, sp) in spawned.items()}
    results: dict[str, dict[str, Any]] = {}
    app = app_loader()  # import Celery while the workers boot
    last_blind = 0.0
    while pending:
        for name, (state, proc) in list(pending.items()):
            code = proc.process.poll()
            if code is not None:
                results[name] = _failure(settings, state, proc, f"exited with status {code} during start-up")
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
                results[name] = {"name": name, "hostname": state.hostname, "state": "started", "pid": proc.pid,
                                 "logfile": state.logfile, "seconds": round(time.monotonic() - began, 3)}
                del pending[name]
    for name, (state, proc) in pending.items():
        results[name] = _failure(settings, state, proc, f"did not answer a ping within {timeout:g}s; stopped it")
        supervise.stop_processes([supervise.StopTarget(name, proc.pid)], timeout=10, cold_timeout=5, force=True)
    return results


# --- workers ------------------------------------------------------------------------------------
def _running_result(state: NodeState) -> dict[str, Any]:
    return {"name": state.name, "hostname": state.hostname, "state": "already-running", "pid": state.pid,
            "logfile": state.logfile, "queues": state.queues}


def _prepare(settings: Settings, spec: NodeState) -> tuple[dict[str, Any] | None, list[str]]:
    """(result if the node already runs, stale files removed) before starting `spec`."""
    existing = load_node(settings, spec.name)
    removed: list[str] = []
    if existing is not None:
        condition = node_condition(existing)
        if condition == supervise.ALIVE:
            return _running_result(existing), []
        removed = _clean_up(settings, existing)
    pidfile = Path(spec.pidfile)
    if pidfile.exists():  # a pidfile without a state file: never signalled, only removed if not ours
        pid = supervise.read_pidfile(pidfile)
        if supervise.process_condition(pid, None, _markers(spec)) == supervise.ALIVE:
            raise OperationFailed(f"{spec.hostname} runs (pid {pid}) but carsctl has no state for it",
                                  hint=f"stop it with `kill -TERM {pid}`, then start it again")
        pidfile.unlink(missing_ok=True)
        removed.append(str(pidfile))
    return None, removed


def _spawn(settings: Settings, spec: NodeState, command: list[str]) -> supervise.Spawned:
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    spawned = supervise.spawn_detached(command, Path(spec.logfile))
    spec.pid, spec.create_time, spec.started_at = spawned.pid, spawned.create_time, _now()
    spec.cmdline, spec.cwd = command, str(Path.cwd())
    save_node(settings, spec)
    (stopped_dir(settings) / f"{spec.name}.json").unlink(missing_ok=True)
    return spawned


def start_workers(settings: Settings, specs: Sequence[NodeState], *, timeout: float = START_TIMEOUT,
                  app_loader: AppLoader = default_app, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Start the nodes not yet running, together; return one result per node, in order.

    A result's "state" is "started" (with pid, seconds until it answered a ping), "already-running"
    (nothing changed) or "failed" (with "error" and the "log_tail" of this start). Stale pidfiles of
    the nodes are removed first and listed in "removed_stale".
    """
    with ExitStack() as locks:
        for name in sorted({spec.name for spec in specs}):
            locks.enter_context(supervise.exclusive(run_dir(settings) / f"{name}.lock"))
        return _start_workers_locked(settings, specs, timeout, app_loader, progress)


def _start_workers_locked(settings: Settings, specs: Sequence[NodeState], timeout: float, app_loader: AppLoader,
                          progress: Progress | None) -> list[dict[str, Any]]:
    from carsctl.connectivity import check_broker

    results: dict[str, dict[str, Any]] = {}
    to_start: list[tuple[NodeState, list[str]]] = []
    for spec in specs:
        result, removed = _prepare(settings, spec)
        if removed:
            _say(progress, f"{spec.name}: removed stale {', '.join(removed)}")
        if result is not None:
            results[spec.name] = result
        else:
            to_start.append((spec, removed))
    if to_start:
        check_broker(settings)
        spawned = {spec.name: (spec, _spawn(settings, spec, worker_command(spec))) for spec, _ in to_start}
        _say(progress, f"waiting for {', '.join(s.hostname for s, _ in spawned.values())} to answer a ping")
        results.update(_wait_ready(settings, spawned, timeout, app_loader))
        for spec, removed in to_start:
            results[spec.name]["removed_stale"] = removed
            if results[spec.name]["state"] == "failed":
                _clean_up(settings, spec)
    return [results[spec.name] for spec in specs]


def start_foreground(settings: Settings, spec: NodeState) -> None:
    """Replace this process with the node's `celery worker`, logging to the terminal (never returns).

    For systemd, containers and debugging: signals reach Celery directly. The state file records this
    pid (exec keeps it) so `worker status` and `worker stop` work from another terminal.
    """
    import os

    import psutil

    from carsctl.connectivity import check_broker

    result, _removed = _prepare(settings, spec)
    if result is not None:
        raise OperationFailed(f"{spec.hostname} is already running (pid {result['pid']})")
    check_broker(settings)
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    command = worker_command(spec, detached=False)
    spec.logfile, spec.cmdline, spec.cwd = "", command, str(Path.cwd())
    spec.pid, spec.create_time, spec.started_at = os.getpid(), psutil.Process().create_time(), _now()
    save_node(settings, spec)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, dict(os.environ))


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
               progress: Progress | None = None) -> list[dict[str, Any]]:
    """Stop nodes (workers, beat or Flower) together; one result per node with "outcome" and "exit_code".

    Outcomes: "warm", "cold", "killed", "still-running" (see supervise.stop_processes), "not-running",
    "stale" (a pidfile of a dead or foreign pid: removed, never signalled).
    """
    results: dict[str, dict[str, Any]] = {}
    running: dict[str, NodeState] = {}
    for state in states:
        condition = node_condition(state) if state.pid else supervise.DEAD
        if condition == supervise.ALIVE:
            running[state.name] = state
            continue
        verdict = _not_running(settings, state, condition) if state.pid else {"status": NOT_RUNNING,
                                                                               "note": "not running"}
        removed = _clean_up(settings, state)
        results[state.name] = {"name": state.name, "hostname": state.hostname, "pid": state.pid,
                               "outcome": verdict["status"], "note": verdict["note"], "removed_stale": removed}
    workers = [s.hostname for s in running.values() if s.kind == "worker"]
    details = _active_tasks(app_loader, workers) if workers else {}
    targets = [supervise.StopTarget(s.hostname, s.pid or 0, details.get(s.hostname, "")) for s in running.values()]
    if targets:
        _say(progress, "stopping " + ", ".join(f"{t.key} (pid {t.pid}{'; ' + t.detail if t.detail else ''})"
                                                for t in targets))
    began = time.monotonic()
    outcomes = supervise.stop_processes(targets, timeout=timeout, cold_timeout=cold_timeout, force=force,
                                        progress=progress)
    for name, state in running.items():
        outcome = outcomes[state.hostname]
        if outcome != supervise.STILL_RUNNING:
            _clean_up(settings, state)
        results[name] = {"name": name, "hostname": state.hostname, "pid": state.pid, "outcome": outcome,
                         "seconds": round(time.monotonic() - began, 3)}
    for result in results.values():
        result["exit_code"] = STOP_EXIT[result["outcome"]]
    return [results[s.name] for s in states]


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
                    app_loader: AppLoader = default_app, progress: Progress | None = None) -> dict[str, Any]:
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
    blocked = {r["name"] for r in stopped if r["outcome"] == supervise.STILL_RUNNING}
    started = start_workers(settings, [s for s in specs if s.name not in blocked], timeout=start_timeout,
                            app_loader=app_loader, progress=progress)
    return {"stopped": stopped, "started": started}


def _uptime(state: NodeState) -> float | None:
    if not state.started_at:
        return None
    return round((datetime.now(UTC) - datetime.fromisoformat(state.started_at)).total_seconds(), 1)


def _status_row(state: NodeState, status: str, note: str = "") -> dict[str, Any]:
    row = {k: v for k, v in asdict(state).items() if k not in ("extra", "cmdline", "create_time", "kind")}
    row.update(status=status, exit_code=STATUS_EXIT[status], note=note,
               uptime_seconds=_uptime(state) if status in (RUNNING, NOT_RESPONDING) else None)
    return row


def worker_status(settings: Settings, names: Sequence[str] = (), *, timeout: float = PING_TIMEOUT,
                  app_loader: AppLoader = default_app) -> list[dict[str, Any]]:
    """Each node's status (see the module docstring), combining its process with a ping addressed to it.

    Read-only: stale pidfiles are reported here and removed by start/stop.
    """
    from carsctl.connectivity import check_broker

    states = worker_targets(settings, names)
    if not names:
        known = {s.name for s in states}
        for pidfile in sorted(run_dir(settings).glob("*.pid")) if run_dir(settings).is_dir() else []:
            if pidfile.stem not in known and pidfile.stem not in RESERVED_NAMES:
                states.append(worker_targets(settings, [pidfile.stem])[0])
    conditions = {s.name: node_condition(s) if s.pid else supervise.DEAD for s in states}
    alive = [s.hostname for s in states if conditions[s.name] == supervise.ALIVE]
    answered: set[str] = set()
    if alive:
        check_broker(settings)
        answered = ping_nodes(app_loader(), alive, timeout)
    rows = []
    for state in states:
        if conditions[state.name] == supervise.ALIVE:
            ok = state.hostname in answered
            rows.append(_status_row(state, RUNNING if ok else NOT_RESPONDING,
                                    "" if ok else f"no reply to a ping within {timeout:g}s"))
        elif state.pid and not state.stopped_at:
            verdict = _not_running(settings, state, conditions[state.name])
            rows.append(_status_row(state, verdict["status"], verdict["note"]))
        else:
            rows.append(_status_row(state, NOT_RUNNING, "stopped" if state.stopped_at else "never started"))
    return rows


# --- beat ---------------------------------------------------------------------------------------
def beat_spec(settings: Settings, loglevel: str | None = None) -> NodeState:
    """Beat's state: one per home, logging to `logs/celery_beat.log`."""
    base = load_node(settings, "beat") or remembered_node(settings, "beat")
    level = (loglevel or (base.loglevel if base else DEFAULT_LOGLEVEL)).lower()
    if level not in LOGLEVELS:
        raise UsageError(f"unknown log level {loglevel!r}", hint=f"levels: {', '.join(LOGLEVELS)}")
    return NodeState(name="beat", hostname=f"beat@{socket.gethostname()}", kind="beat", loglevel=level,
                     logfile=str(settings.log_dir / "celery_beat.log"), pidfile=str(pidfile_path(settings, "beat")))


def beat_command(state: NodeState, *, detached: bool = True) -> list[str]:
    """The `celery beat` command line (the LockedScheduler comes from the app's configuration)."""
    command = celery_command("beat", "-l", state.loglevel, "--pidfile", state.pidfile)
    return [*command, "--logfile", state.logfile] if detached else command


def _broker_redis(settings: Settings) -> Any:
    """A redis-py client on the broker (None when the broker is not Redis)."""
    from cars_bot.broker import is_redis_url
    from carsctl.connectivity import redis_client

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
    from carsctl.connectivity import check_broker

    result, removed = _prepare(settings, spec)
    if result is not None:
        return result
    if removed:
        _say(progress, f"beat: removed stale {', '.join(removed)}")
    check_broker(settings)
    client = _broker_redis(settings)
    holder = _lock_conflict(client) if client is not None else None
    if holder is not None:
        from cars_bot.beat import heartbeat_age, read_heartbeat

        age = heartbeat_age(read_heartbeat(client))
        return {"name": "beat", "state": "refused", "holder": holder, "heartbeat_age_seconds": age,
                "error": f"another beat runs against this broker: {holder.get('hostname')} pid {holder.get('pid')}"
                         + (f", last tick {age:.0f}s ago" if age is not None else "")}
    spawned = _spawn(settings, spec, beat_command(spec))
    return _wait_beat_ready(settings, spec, spawned, client, timeout)


def _wait_beat_ready(settings: Settings, spec: NodeState, spawned: supervise.Spawned, client: Any,
                     timeout: float) -> dict[str, Any]:
    from cars_bot.beat import read_heartbeat

    began = time.monotonic()
    watcher = supervise.LogWatcher(Path(spec.logfile), spawned.log_offset)
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            _clean_up(settings, spec)
            return _failure(settings, spec, spawned, f"exited with status {code} during start-up")
        ready = (read_heartbeat(client) or {}).get("pid") == spawned.pid if client is not None \
            else watcher.saw(b"beat: Starting...")
        if ready:
            return {"name": "beat", "hostname": spec.hostname, "state": "started", "pid": spawned.pid,
                    "logfile": spec.logfile, "seconds": round(time.monotonic() - began, 3)}
        time.sleep(supervise.POLL_INTERVAL)
    failure = _failure(settings, spec, spawned, f"wrote no heartbeat within {timeout:g}s; stopped it")
    supervise.stop_processes([supervise.StopTarget("beat", spawned.pid)], timeout=10, cold_timeout=5, force=True)
    _clean_up(settings, spec)
    return failure


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
    from carsctl.connectivity import check_broker

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
        verdict = _not_running(settings, state, condition)
        status, note = verdict["status"], verdict["note"]
    else:
        status, note = NOT_RUNNING, "stopped" if state.stopped_at else "never started"
    if status != RUNNING and heartbeat and not ours:
        note += f"; a beat runs elsewhere: {heartbeat.get('hostname')} pid {heartbeat.get('pid')}"
    row = _status_row(state, status, note.strip("; "))
    row.update(heartbeat_age_seconds=age, stale_after_seconds=limit, lock_holder=holder,
               tick_at=(heartbeat or {}).get("tick_at"), entries=(heartbeat or {}).get("entries", {}))
    return row


# --- Flower -------------------------------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _port_open(address: str, port: int) -> bool:
    host = "127.0.0.1" if address in ("0.0.0.0", "") else "::1" if address == "::" else address
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_flower(settings: Settings, *, port: int = 5555, address: str = "127.0.0.1",
                 basic_auth: str | None = None, timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start Flower detached (pidfile, `logs/flower.log`); loopback only unless authentication is set.

    The credentials reach Flower through FLOWER_BASIC_AUTH in its environment: never on the command
    line (`ps`) nor in the state file.
    """
    import os

    if not is_loopback(address) and not basic_auth:
        raise UsageError(f"refusing to serve Flower on {address} without authentication",
                         hint="add --basic-auth user:password, or listen on 127.0.0.1")
    if basic_auth is not None and (":" not in basic_auth or basic_auth.startswith(":")):
        raise UsageError("--basic-auth must be user:password")
    state = NodeState(name="flower", hostname=f"flower@{socket.gethostname()}", kind="flower",
                      logfile=str(settings.log_dir / "flower.log"), pidfile=str(pidfile_path(settings, "flower")),
                      extra={"port": port, "address": address,
                             "auth_user": basic_auth.split(":", 1)[0] if basic_auth else None})
    url = f"http://{address if ':' not in address else f'[{address}]'}:{port}/"
    existing = load_node(settings, "flower")
    if existing is not None and node_condition(existing) == supervise.ALIVE:
        port, address = existing.extra.get("port"), existing.extra.get("address")
        return {**_running_result(existing), "url": f"http://{address}:{port}/"}
    if existing is not None:
        _clean_up(settings, existing)
    if _port_open(address, port):
        raise OperationFailed(f"port {port} on {address} is already in use", hint="choose another with --port")
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth
    command = celery_command("flower", f"--port={port}", f"--address={address}")
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    spawned = supervise.spawn_detached(command, Path(state.logfile), env=env)
    state.pid, state.create_time, state.started_at, state.cmdline = (spawned.pid, spawned.create_time, _now(),
                                                                     command)
    save_node(settings, state)
    Path(state.pidfile).write_text(f"{spawned.pid}\n")
    return _wait_flower_ready(settings, state, spawned, timeout, url)


def _wait_flower_ready(settings: Settings, state: NodeState, spawned: supervise.Spawned, timeout: float,
                       url: str) -> dict[str, Any]:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            _clean_up(settings, state)
            return _failure(settings, state, spawned, f"exited with status {code} during start-up")
        if _port_open(state.extra["address"], state.extra["port"]):
            return {"name": "flower", "state": "started", "pid": spawned.pid, "url": url,
                    "logfile": state.logfile, "seconds": round(time.monotonic() - began, 3)}
        time.sleep(0.05)
    supervise.stop_processes([supervise.StopTarget("flower", spawned.pid)], timeout=5, cold_timeout=2, force=True)
    _clean_up(settings, state)
    return _failure(settings, state, spawned, f"did not listen on {url} within {timeout:g}s; stopped it")


def stop_flower(settings: Settings, *, timeout: float = 10.0, force: bool = True) -> dict[str, Any]:
    """Stop Flower (it keeps no state worth a long wait)."""
    state = load_node(settings, "flower")
    if state is None:
        return {"name": "flower", "outcome": NOT_RUNNING, "exit_code": 0, "note": "not running"}
    return stop_nodes(settings, [state], timeout=timeout, cold_timeout=2.0, force=force)[0]


# --- the whole stack ----------------------------------------------------------------------------
def stack_layout(settings: Settings, node_specs: Sequence[str], *, pool: str | None = None,
                 concurrency: int | None = None, loglevel: str | None = None) -> list[NodeState]:
    """The worker nodes `up` starts: the --node specs; else the nodes started or remembered; else one
    default node on all five queues."""
    if node_specs:
        layout = parse_node_layout(node_specs)
    else:
        known = {s.name for s in [*list_nodes(settings), *remembered_nodes(settings)]}
        layout = [{"name": name} for name in sorted(known)] or [{"name": DEFAULT_NODE}]
    return [worker_spec(settings, entry.pop("name"), pool=pool, loglevel=loglevel,
                        concurrency=entry.pop("concurrency", concurrency), **entry) for entry in layout]


def bring_up(settings: Settings, nodes: Sequence[NodeState], *, beat: bool = True,
             timeout: float = START_TIMEOUT, app_loader: AppLoader = default_app,
             progress: Progress | None = None) -> dict[str, Any]:
    """Embedded broker (when no REDIS_URL), database migrations, worker nodes, beat: in that order.

    Stops at the first step that fails (`"ok": False`); every step is idempotent, so running it again
    after fixing the cause continues where it stopped.
    """
    from carsctl import embedded_redis
    from carsctl.connectivity import check_broker, check_database

    steps: dict[str, Any] = {"ok": False}
    if settings.uses_embedded_broker:
        steps["broker"] = embedded_redis.start(settings)
        _say(progress, f"broker: embedded Redis {'started' if steps['broker']['started'] else 'already running'}"
                       f" (pid {steps['broker']['pid']})")
    steps["broker_check"] = check_broker(settings)
    check_database(settings)
    from cars_bot.db.migrate import upgrade

    steps["database"] = upgrade(settings.database_url)
    _say(progress, f"database: at revision {steps['database']['to']}")
    steps["workers"] = start_workers(settings, nodes, timeout=timeout, app_loader=app_loader, progress=progress)
    if any(r["state"] == "failed" for r in steps["workers"]):
        return steps
    if beat:
        steps["beat"] = start_beat(settings, timeout=timeout, progress=progress)
        if steps["beat"]["state"] == "failed":
            return steps
    steps["ok"] = True
    return steps


def bring_down(settings: Settings, *, timeout: float = STOP_TIMEOUT, cold_timeout: float = COLD_TIMEOUT,
               force: bool = False, keep_broker: bool = False, app_loader: AppLoader = default_app,
               progress: Progress | None = None) -> dict[str, Any]:
    """Flower, beat, worker nodes, then the embedded broker: the reverse of `bring_up`."""
    from carsctl import embedded_redis

    steps: dict[str, Any] = {}
    if load_node(settings, "flower") is not None:
        steps["flower"] = stop_flower(settings)
    if load_node(settings, "beat") is not None:
        steps["beat"] = stop_beat(settings, cold_timeout=cold_timeout, force=force, progress=progress)
    steps["workers"] = stop_nodes(settings, list_nodes(settings), timeout=timeout, cold_timeout=cold_timeout,
                                  force=force, app_loader=app_loader, progress=progress)
    left = [r for r in [steps.get("beat"), *steps["workers"]] if r and r["outcome"] == supervise.STILL_RUNNING]
    if settings.uses_embedded_broker and not keep_broker and not left:
        steps["broker"] = embedded_redis.stop(settings)
    codes = [r["exit_code"] for r in [steps.get("flower"), steps.get("beat"), *steps["workers"]] if r]
    steps["exit_code"] = exit_code_of(codes)
    return steps
