"""Node state files: what carsctl started, with which options, so nothing needs repeating.

One JSON file per worker node under `$CARSCTL_HOME/nodes/<name>.json` (plus `beat.json` for beat):
the options it was started with, its pid, the process start time (to tell a recycled pid from our
process), the log file. Read by `worker`/`beat` lifecycle commands, `status`, `inspect` (to know which
nodes to expect replies from) and shell completion (node names).
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


@dataclass
class NodeState:
    """A worker node (or beat, kind="beat") as carsctl started it."""

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


def nodes_dir(settings: Settings) -> Path:
    return settings.home / "nodes"


def node_hostname(name: str) -> str:
    """The Celery node name of a short node name (`ai` -> `ai@<host>`)."""
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def save_node(settings: Settings, state: NodeState) -> Path:
    """Write a node's state atomically."""
    directory = nodes_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{state.name}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)
    return path


def load_node(settings: Settings, name: str) -> NodeState | None:
    path = nodes_dir(settings) / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = set(NodeState.__dataclass_fields__)
    return NodeState(**{k: v for k, v in data.items() if k in known})


def list_nodes(settings: Settings, kind: str | None = "worker") -> list[NodeState]:
    """Every node with a state file (workers by default; kind=None for all), sorted by name."""
    directory = nodes_dir(settings)
    if not directory.is_dir():
        return []
    states = [load_node(settings, path.stem) for path in sorted(directory.glob("*.json"))]
    return [s for s in states if s is not None and (kind is None or s.kind == kind)]


def remove_node(settings: Settings, name: str) -> None:
    (nodes_dir(settings) / f"{name}.json").unlink(missing_ok=True)
