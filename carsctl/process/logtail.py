"""Log tailing: the last lines of a node's log, and following it across rotation by rename.

Celery writes its logs with `WatchedFileHandler`, so a rotated file is renamed away and a new one is
created under the same name. A follower notices that the name now points at another file (a new
inode), reads what was left in the old file, and carries on at the start of the new one; a truncated
file is read again from its start.

Filters work on log *records*: a record starts with Celery's `[date time: LEVEL/process]` prefix and
continues over the lines that follow it (a traceback), so `--level ERROR` shows the traceback too.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from carsctl.errors import UsageError

if TYPE_CHECKING:
    from cars_bot.config import Settings

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RECORD_START = re.compile(r"^\[\d{4}-\d\d-\d\d[ T][\d:,.]+: (?P<level>[A-Z]+)[/\]]")
ANY_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
POLL_S = 0.2

#: target -> the seed's log file name under LOG_DIR, used when carsctl's node state names none.
DEFAULT_FILES = {"worker": "celery_worker.log", "beat": "celery_beat.log", "monitor": "monitor.log"}


@dataclass(frozen=True, slots=True)
class LogSource:
    """One log file and the label its lines get when several files are shown together."""

    label: str
    path: Path


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a log, with the file it came from."""

    source: LogSource
    line: str

    @property
    def level(self) -> str | None:
        """The level of the record this line starts (None for a continuation line)."""
        return record_level(self.line)


def log_sources(settings: Settings, target: str = "worker") -> list[LogSource]:
    """The log files of `worker` (every worker node), `beat`, `monitor`, or one node by name."""
    from carsctl.process.nodes import list_nodes

    states = list_nodes(settings, kind=None)
    kinds = {"worker": "worker", "beat": "beat", "monitor": "monitor"}
    if target in kinds:
        chosen = [s for s in states if s.kind == kinds[target] and s.logfile]
    else:
        chosen = [s for s in states if target in (s.name, s.hostname) and s.logfile]
    sources = [LogSource(s.name, Path(s.logfile)) for s in chosen]
    if sources:
        return sources
    fallback = settings.log_dir / DEFAULT_FILES.get(target, f"{target}.log")
    if fallback.exists() or target in DEFAULT_FILES:
        return [LogSource(target, fallback)]
    from difflib import get_close_matches

    names = sorted({*DEFAULT_FILES, *(s.name for s in states),
                    *(path.stem for path in settings.log_dir.glob("*.log"))})
    close = get_close_matches(target, names, n=3, cutoff=0.5)
    raise UsageError(f"no log for {target!r}", hint=f"did you mean {', '.join(close)}?" if close
                     else f"one of: {', '.join(names)}")


def record_level(line: str) -> str | None:
    """The level of a line that starts a log record; None for a continuation line (a traceback)."""
    start = RECORD_START.match(line)
    if start is not None:
        level = start.group("level")
    elif line[:1].strip() and (found := ANY_LEVEL.search(line[:60])):
        level = found.group(1)  # another format: a level word near the start of an unindented line
    else:
        return None
    return LEVEL_ALIASES.get(level, level)


@dataclass
class RecordFilter:
    """Which log records to show: at least `level`, mentioning `task_id`, with a line containing `grep`.

    Feed it the lines in file order: a continuation line is shown with its record, and `grep` (case
    insensitive) selects single lines, or a whole record when its first line matches.
    """

    level: str | None = None
    task_id: str | None = None
    grep: str | None = None
    _showing: bool = field(default=True, repr=False)
    _record_matches_grep: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.level is not None:
            level = LEVEL_ALIASES.get(self.level.upper(), self.level.upper())
            if level not in LEVELS:
                raise UsageError(f"unknown level {self.level!r}", hint=f"one of: {', '.join(LEVELS)}")
            self.level = level
        self._grep = self.grep.lower() if self.grep else None
        self._showing = self.level is None and self.task_id is None

    @property
    def active(self) -> bool:
        return bool(self.level or self.task_id or self.grep)

    def accepts(self, line: str) -> bool:
        level = record_level(line)
        if level is not None:
            level_ok = self.level is None or level not in LEVELS or LEVELS.index(level) >= LEVELS.index(self.level)
            self._showing = level_ok and (self.task_id is None or self.task_id in line)
            self._record_matches_grep = bool(self._grep) and self._grep in line.lower()
        if not self._showing:
            return False
        return self._grep is None or self._record_matches_grep or self._grep in line.lower()


def last_lines(path: Path, count: int, keep: Callable[[str], bool] | None = None,
               end: int | None = None) -> list[str]:
    """The last `count` lines of a file (that `keep` accepts) before byte offset `end`; [] for a missing file."""
    if count <= 0 or not path.exists():
        return []
    if keep is None:
        return _tail_unfiltered(path, count, end)
    lines: deque[str] = deque(maxlen=count)
    read = 0
    with open(path, "rb") as handle:
        for raw in handle:
            if end is not None:
                if read >= end:
                    break
                raw = raw[:end - read]  # the rest of a line cut at `end` is the follower's
            read += len(raw)
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if keep(line):
                lines.append(line)
    return list(lines)


def _tail_unfiltered(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last lines read backwards in blocks, so a large file is not read whole."""
    block = 64 * 1024
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell() if end is None else min(end, handle.tell())
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


class Follower:
    """New lines of one file as they are written, across rotation by rename and truncation."""

    def __init__(self, source: LogSource, from_end: bool = True) -> None:
        self.source = source
        self._handle: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._open(seek_end=from_end)

    def _open(self, seek_end: bool) -> None:
        try:
            handle = open(self.source.path, "rb")  # kept open while following
        except FileNotFoundError:
            self._handle, self._inode = None, None
            return
        if seek_end:
            handle.seek(0, os.SEEK_END)
        self._handle, self._inode = handle, os.fstat(handle.fileno()).st_ino

    @property
    def position(self) -> int:
        """The byte offset the next poll reads from (0 while the file does not exist)."""
        return self._handle.tell() - len(self._partial) if self._handle is not None else 0

    def poll(self) -> list[str]:
        """Complete lines written since the last poll."""
        lines = self._read()
        try:
            status = os.stat(self.source.path)
        except FileNotFoundError:
            return lines  # renamed away, the new file is not created yet: keep the old one
        if self._handle is None or status.st_ino != self._inode:
            # Rotated (or created): finish the old file, then read the new one from its start.
            lines += self._read(final=True)
            self.close()
            self._open(seek_end=False)
            lines += self._read()
        elif status.st_size < self._handle.tell():
            self._handle.seek(0)  # truncated in place (copytruncate)
            self._partial = b""
            lines += self._read()
        return lines

    def _read(self, final: bool = False) -> list[str]:
        if self._handle is None:
            return []
        data = self._partial + self._handle.read()
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", errors="replace") for line in complete]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def follow(sources: list[LogSource], *, poll_s: float = POLL_S,
           stop: Callable[[], bool] | None = None) -> Iterator[LogLine]:
    """Lines appended to any of `sources` from now on, until `stop()` is true (or forever)."""
    followers = [Follower(source) for source in sources]
    try:
        yield from _follow(followers, poll_s, stop)
    finally:
        for follower in followers:
            follower.close()


def _follow(followers: list[Follower], poll_s: float, stop: Callable[[], bool] | None) -> Iterator[LogLine]:
    while stop is None or not stop():
        got = False
        for follower in followers:
            for line in follower.poll():
                got = True
                yield LogLine(follower.source, line)
        if not got:
            time.sleep(poll_s)


def log_lines(sources: list[LogSource], *, lines: int = 20, follow_on: bool = False, level: str | None = None,
              task_id: str | None = None, grep: str | None = None,
              stop: Callable[[], bool] | None = None) -> Iterator[LogLine]:
    """The last `lines` matching lines of each source, then (with `follow_on`) every new matching line.

    When following, each file is opened before its last lines are read, and those are read up to the
    offset the follower starts at (as `tail -f` does): a line written meanwhile is shown once, never
    lost between the two.
    """
    filters = {id(source): RecordFilter(level=level, task_id=task_id, grep=grep) for source in sources}
    followers = [Follower(source) for source in sources] if follow_on else []
    try:
        for index, source in enumerate(sources):
            record_filter = filters[id(source)]
            end = followers[index].position if followers else None
            keep = record_filter.accepts if record_filter.active else None
            for line in last_lines(source.path, lines, keep, end=end):
                yield LogLine(source, line)
        if not follow_on:
            return
        for item in _follow(followers, POLL_S, stop):
            if filters[id(item.source)].accepts(item.line):
                yield item
    finally:
        for follower in followers:
            follower.close()
