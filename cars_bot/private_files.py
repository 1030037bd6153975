"""Files only their owner may read: the state directory, the SQLite database, the outbox and the logs.

They hold what the broker queue holds (task arguments, post texts, tracebacks), so they are created
0700 (directories) and 0600 (files) whatever the umask, and tightened when an older version left them
readable by others. Processes carsctl spawns run with PRIVATE_UMASK, so what they create (Celery's log
files, Redis's append-only file, SQLite's WAL) is private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create `path` and its missing parents 0700; tighten `path` itself if it is ours and open to others
    (not with `tighten_existing=False`: a log directory the user chose may be shared on purpose)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        _chmod(created, PRIVATE_DIR)
    if tighten_existing:
        tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty (0600) unless it exists; tighten it if it is ours and open to others."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    tighten(path, PRIVATE_FILE)
    return path


def open_private(path: Path, mode: str = "a", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` creating the file 0600 (an existing file of ours is tightened)."""
    handle = open(path, mode, opener=lambda name, flags: os.open(name, flags, PRIVATE_FILE), **kwargs)
    tighten(path, PRIVATE_FILE)
    return handle


def tighten(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when it is ours and grants anything to group or others (best effort)."""
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        _chmod(path, mode)


def readable_by_others(path: Path) -> bool:
    """True when `path` exists and its group or others may read it."""
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _chmod(path: Path, mode: int) -> None:
    try:
        path.chmod(mode)
    except OSError:
        pass  # not ours to change (a shared parent): the files inside are still 0600
