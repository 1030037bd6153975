"""The monitor's heartbeat: a small JSON file it rewrites on every state change and every refresh
(`$CARSCTL_HOME/run/monitor.heartbeat.json`), which `carsctl monitor status|start` read."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cars_bot.config import Settings


class ListenState(StrEnum):
    """Where the monitor is."""

    CONNECTING = "connecting"
    LISTENING = "listening"        # connected, handler registered, caught up
    RECONNECTING = "reconnecting"  # lost the connection; backing off before the next try
    STOPPING = "stopping"          # finishing the message or album in hand
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class MonitorHeartbeat:
    """What the monitor last said about itself."""

    pid: int
    state: ListenState
    updated_at: str  # ISO UTC
    interval: int  # seconds between channel refreshes (the heartbeat is stale after a few)
    channels: tuple[str, ...] = ()  # listened to
    failed: dict[str, str] = field(default_factory=dict)  # channel -> why it is not listened to
    last_message_at: str | None = None  # the newest message stored or skipped
    last_catch_up_at: str | None = None
    stored: int = 0  # posts stored since start
    duplicates: int = 0  # deliveries of posts already stored
    flood_waits: int = 0
    error: str | None = None  # the last connection error


def heartbeat_path(settings: Settings) -> Path:
    return settings.home / "run" / "monitor.heartbeat.json"


def write_heartbeat(path: Path, beat: MonitorHeartbeat) -> None:
    """Replace the heartbeat file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(beat), ensure_ascii=False))
    tmp.replace(path)


def read_heartbeat(path: Path) -> MonitorHeartbeat | None:
    """The last heartbeat, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
        data["state"] = ListenState(data["state"])
        data["channels"] = tuple(data.get("channels") or ())
        return MonitorHeartbeat(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
