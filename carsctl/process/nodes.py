"""Node state files: what carsctl started, with which options, so nothing needs repeating.

One JSON file per running worker node under `$CARSCTL_HOME/nodes/<name>.json` (plus `beat.json` for
beat, kind="beat", and `flower.json`, kind="flower"): the options it was started with, its pid, the
process start time (to tell a recycled pid from our process), the log file. Read by the `worker`/`beat`
lifecycle commands, `status`, `inspect` (to know which nodes to expect replies from) and shell
completion (node names).

When a node is stopped its state file moves to `nodes/stopped/<name>.json` (pid cleared): it no longer
counts as started (`list_nodes` skips it, so nobody waits for its reply), but its options are remembered
for the next `worker start NODE` / `carsctl up`.

Pidfiles live in `$CARSCTL_HOME/run/<name>.pid`; Celery itself writes them (`--pidfile`).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cars_bot.config import Settings

#: Names that are not worker nodes (their state files sit next to the workers').
RESERVED_NAMES = frozenset({"beat", "flower", "monitor", "stopped"})


@dataclass
class NodeState:
    """A worker node (or beat, kind="beat", or Flower, kind="flower") as carsctl started it."""

    name: str                     # short name, e.g. "worker" or "ai"
    hostname: str                 # the Celery node name, e.g. "ai@host"
    kind: str = "worker"
    queues: list[str] = field(default_factory=list)
    concurrency: int | None = None
    pool: str | None = None
    autoscale: str | None = None
    loglevel: str = "info"
    logfile: str = ""
    pidfile: str = ""
    pid: int | None = None
    create_time: float | None = None  # psutil create_time of pid
    started_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)  # extra task modules (`celery worker -I`)
    cmdline: list[str] = field(default_factory=list)  # the exact command carsctl ran
    cwd: str = ""
    stopped_at: str | None = None


def nodes_dir(settings: Settings) -> Path:
    """Where the state files of running (or crashed) nodes are."""
    return settings.home / "nodes"


def stopped_dir(settings: Settings) -> Path:
    """Where the options of stopped nodes are remembered."""
    return nodes_dir(settings) / "stopped"


def run_dir(settings: Settings) -> Path:
    """Where the pidfiles are."""
    return settings.home / "run"


def pidfile_path(settings: Settings, name: str) -> Path:
    """The pidfile of a node (Celery writes it; carsctl writes Flower's)."""
    return run_dir(settings) / f"{name}.pid"


def worker_logfile(settings: Settings, name: str) -> Path:
    """`logs/celery_worker.log` for the default node "worker", `logs/celery_worker-<name>.log` otherwise."""
    filename = "celery_worker.log" if name == "worker" else f"celery_worker-{name}.log"
    return settings.log_dir / filename


def node_hostname(name: str) -> str:
    """The Celery node name of a short node name (`ai` -> `ai@<host>`)."""
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def short_name(name: str) -> str:
    """`ai@host` -> `ai` (node arguments may be given either way)."""
    return name.split("@", 1)[0]


def _write(path: Path, state: NodeState) -> Path:
    from cars_bot.private_files import private_dir

    private_dir(path.parent)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)
    return path


def _read(path: Path) -> NodeState | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = set(NodeState.__dataclass_fields__)
    try:
        return NodeState(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a file missing required fields is not a state file
        return None


def save_node(settings: Settings, state: NodeState) -> Path:
    """Write a node's state atomically."""
    return _write(nodes_dir(settings) / f"{state.name}.json", state)


def load_node(settings: Settings, name: str) -> NodeState | None:
    """The state of a started node, or None."""
    return _read(nodes_dir(settings) / f"{name}.json")


def list_nodes(settings: Settings, kind: str | None = "worker") -> list[NodeState]:
    """Every node with a state file (workers by default; kind=None for all), sorted by name."""
    directory = nodes_dir(settings)
    if not directory.is_dir():
        return []
    states = [load_node(settings, path.stem) for path in sorted(directory.glob("*.json"))]
    return [s for s in states if s is not None and (kind is None or s.kind == kind)]


def remove_node(settings: Settings, name: str) -> None:
    """Delete a node's state file (its options are not remembered: see forget_node)."""
    (nodes_dir(settings) / f"{name}.json").unlink(missing_ok=True)


def forget_node(settings: Settings, state: NodeState, stopped_at: str) -> None:
    """The node is no longer running: keep its options under `nodes/stopped/`, drop its state file."""
    remembered = NodeState(**{**asdict(state), "pid": None, "create_time": None, "stopped_at": stopped_at})
    _write(stopped_dir(settings) / f"{state.name}.json", remembered)
    remove_node(settings, state.name)


def remembered_node(settings: Settings, name: str) -> NodeState | None:
    """The options a stopped node last ran with (None when it never ran)."""
    return _read(stopped_dir(settings) / f"{name}.json")


def remembered_nodes(settings: Settings, kind: str = "worker") -> list[NodeState]:
    """Every stopped node of `kind` whose options are remembered, sorted by name."""
    directory = stopped_dir(settings)
    if not directory.is_dir():
        return []
    states = [_read(path) for path in sorted(directory.glob("*.json"))]
    return [s for s in states if s is not None and s.kind == kind]
