"""What each node of the stack runs with: worker and beat specs, their Celery command lines and the
`--node` layout.

Every process is the real Celery command line, run as a direct child in its own session:
`sys.executable -m celery -A cars_bot.celery_app worker -n NAME@HOST ... --pidfile ... --logfile ...`,
with the CLI's own environment (REDIS_URL, DATABASE_URL, ... are inherited, never put on the command
line where `ps` would show them). What starting, stopping and checking them returns is in
:mod:`carsctl.lifecycle.node_results`.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carsctl.errors import UsageError
from carsctl.process.nodes import (
    RESERVED_NAMES,
    NodeState,
    list_nodes,
    load_node,
    node_hostname,
    pidfile_path,
    remembered_node,
    remembered_nodes,
    short_name,
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

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

AppLoader = Callable[[], Any]
Progress = Callable[[str], None]


def default_app() -> Any:
    """The cars_bot Celery app (imports Celery)."""
    from cars_bot.celery_app import app

    return app


def say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def celery_command(*args: str) -> list[str]:
    """`python -m celery -A cars_bot.celery_app ARGS` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", APP, *args]


def exit_code_of(codes: Sequence[int]) -> int:
    """The exit code of a command over several nodes: the highest (0 when there is none)."""
    return max(codes, default=0)


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


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """One `--node NAME[:QUEUES[:CONCURRENCY]]`: what it sets (None: not given, worker_spec decides)."""

    name: str
    queues: tuple[str, ...] | None = None  # worker_spec checks the names
    concurrency: int | None = None


def parse_node_layout(specs: Sequence[str]) -> list[NodeLayout]:
    """`--node NAME[:QUEUES[:CONCURRENCY]]` values (e.g. `ai:ai_processing:2`), syntax checked."""
    layout = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) > 3 or not parts[0]:
            raise UsageError(f"--node {spec!r} must be NAME[:QUEUES[:CONCURRENCY]], e.g. ai:ai_processing:2")
        concurrency = None
        if len(parts) > 2 and parts[2]:
            digits = parts[2].isascii() and parts[2].isdigit() and len(parts[2]) <= 6
            if not digits or not 1 <= int(parts[2]) <= 10_000:
                raise UsageError(f"--node {spec[:60]!r}: the concurrency must be an integer from 1 to 10000")
            concurrency = int(parts[2])
        queues = tuple(q.strip() for q in parts[1].split(",") if q.strip()) if len(parts) > 1 and parts[1] else None
        layout.append(NodeLayout(parts[0], queues, concurrency))
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


def stack_layout(settings: Settings, node_specs: Sequence[str], *, pool: str | None = None,
                 concurrency: int | None = None, loglevel: str | None = None) -> list[NodeState]:
    """The worker nodes `up` starts: the --node specs; else the nodes started or remembered; else one
    default node on all five queues."""
    if node_specs:
        layout = parse_node_layout(node_specs)
    else:
        known = {s.name for s in [*list_nodes(settings), *remembered_nodes(settings)]}
        layout = [NodeLayout(name) for name in sorted(known)] or [NodeLayout(DEFAULT_NODE)]
    return [worker_spec(settings, entry.name, queues=entry.queues, pool=pool,
                        loglevel=loglevel, concurrency=entry.concurrency or concurrency) for entry in layout]
