"""Processes that carsctl starts: spawn detached, recognise our own, signal with escalation, read logs.

Design choices (see ops-pitfalls.md):

- **No `--detach`.** `celery worker --detach` double-forks, so the pid Popen sees is not the pid in the
  pidfile, and an import error happens after the parent already said OK (celery#6199). carsctl runs the
  real `celery worker` as a direct child in a new session (`start_new_session=True`: no controlling
  terminal, so closing the terminal sends it no SIGHUP), stdin from /dev/null, stdout/stderr appended to
  the node's log file (an import error before Celery sets up logging lands there too). The child's pid
  is the pid Celery writes to its `--pidfile`, and carsctl can watch it die during start-up.
- **A pid is trusted only after checking the process** (celery#1855, #2785, #5409): it must be alive
  (not a zombie), its start time must equal the one recorded when carsctl spawned it, and its command
  line must still look like ours. Anything else is a stale pidfile: reported, removed, never signalled.
- **Stop signals the main pid only** (never the process group, which would kill running tasks,
  celery#2700), waits with a bound, escalates to a cold shutdown (SIGQUIT), and only then, if allowed,
  SIGKILLs the main process and the children it had when the stop began. Every wait is bounded
  (celery#1770).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Condition(StrEnum):
    """What runs at a recorded pid (see :func:`process_condition`): ours, nothing, or someone else's."""

    ALIVE = "alive"
    DEAD = "dead"
    FOREIGN = "foreign"


class Shutdown(StrEnum):
    """How :func:`stop_processes` ended one process, from best to worst."""

    WARM = "warm"                    # exited on SIGTERM: running tasks finished
    COLD = "cold"                    # needed the cold signal (SIGQUIT): running tasks cancelled
    KILLED = "killed"                # needed SIGKILL (only with force)
    STILL_RUNNING = "still-running"  # survived the cold signal and force was not given


#: Two start times closer than this are the same process (psutil derives them from clock ticks).
CREATE_TIME_TOLERANCE = 0.5
POLL_INTERVAL = 0.03
PROGRESS_EVERY = 5.0
KILL_WAIT = 5.0


@dataclass
class Spawned:
    """A process just started by :func:`spawn_detached`."""

    pid: int
    create_time: float
    log_offset: int  # size of the log file before the start: this run's lines come after it
    process: subprocess.Popen[bytes] = field(repr=False)


#: Signals a shell may leave ignored for its children (a background job ignores INT and QUIT; nohup
#: ignores HUP). An ignored signal stays ignored across fork and exec, so a node started from such a
#: shell would shrug off the very signal carsctl stops it with.
INHERITABLE_IGNORES = (signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_signals() -> None:
    """`preexec_fn` of every process carsctl spawns: the default dispositions, whatever we inherited."""
    for signum in INHERITABLE_IGNORES:
        signal.signal(signum, signal.SIG_DFL)


def spawn_detached(command: Sequence[str], logfile: Path, env: Mapping[str, str] | None = None,
                   cwd: Path | None = None) -> Spawned:
    """Start `command` in its own session with output appended to `logfile`; return its pid at once."""
    import psutil

    from cars_bot.private_files import PRIVATE_UMASK, open_private, private_dir

    private_dir(logfile.parent, tighten_existing=False)
    offset = logfile.stat().st_size if logfile.exists() else 0
    with open_private(logfile, "ab") as output:  # the log and all the process creates: owner only
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env=dict(env if env is not None else os.environ), cwd=cwd, start_new_session=True,
            close_fds=True, preexec_fn=default_signals, umask=PRIVATE_UMASK,
        )
    try:
        create_time = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:  # died at once; the caller sees it through process.poll()
        create_time = 0.0
    return Spawned(process.pid, create_time, offset, process)


def process_condition(pid: int | None, create_time: float | None, markers: Sequence[str]) -> Condition:
    """ALIVE when `pid` is our process, DEAD when nothing (or a zombie) runs there, FOREIGN otherwise.

    Ours means: the start time equals `create_time` (when one was recorded) and every marker (e.g.
    "celery", "worker@host") appears in the command line.
    """
    import psutil

    if not pid or pid <= 0:
        return Condition.DEAD
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return Condition.DEAD
        if create_time is not None and abs(process.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return Condition.FOREIGN
        cmdline = " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return Condition.DEAD
    except psutil.AccessDenied:  # another user's process: certainly not one we started
        return Condition.FOREIGN
    return Condition.ALIVE if all(marker in cmdline for marker in markers) else Condition.FOREIGN


def describe_process(pid: int) -> str:
    """A short description of whatever runs as `pid` (for 'not ours' messages)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return " ".join(process.cmdline())[:120] or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def _reap(pid: int) -> None:
    """Collect a zombie if it is our own child (a no-op otherwise)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs.

    Two `carsctl worker start NODE` racing each other: the second waits, then finds the node running
    (instead of both spawning, the loser's clean-up removing the winner's pidfile).
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_pidfile(path: Path) -> int | None:
    """The pid in a pidfile, or None (missing or garbled)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(path: Path, offset: int = 0, lines: int = 20) -> list[str]:
    """The last `lines` lines of `path` written after byte `offset`."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(offset, size - 64 * 1024) if size >= offset else 0
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


class LogWatcher:
    """Reads what a process appends to its log, to spot a line (e.g. Celery's 'node ready.')."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self._buffer = b""

    def saw(self, needle: bytes) -> bool:
        """True once `needle` appeared in the log after the starting offset."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return False
        self.offset += len(chunk)
        self._buffer = (self._buffer + chunk)[-65536:]
        return needle in self._buffer


@dataclass
class StopTarget:
    """One process to stop: `key` names it in progress lines and results."""

    key: str
    pid: int
    detail: str = ""  # e.g. "1 task running: cars_bot.tasks...[id]"


ProgressFn = Callable[[str], None]


def _alive(process: Any) -> bool:
    import psutil

    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(process.pid)
            return False
        return process.is_running()
    except psutil.NoSuchProcess:
        return False


def _signal(process: Any, signum: int) -> None:
    """Signal one process (psutil refuses if the pid was reused meanwhile)."""
    import psutil

    try:
        if process.is_running():  # compares the start time, so a recycled pid is never signalled
            process.send_signal(signum)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        pass


def _wait(processes: dict[str, Any], seconds: float, phase: str, progress: ProgressFn | None,
          details: Mapping[str, str]) -> None:
    """Wait until every process has exited or `seconds` passed, reporting what still runs."""
    began = time.monotonic()
    deadline = began + seconds
    next_report = began + PROGRESS_EVERY
    while True:
        for key in [k for k, p in processes.items() if not _alive(p)]:
            del processes[key]
        now = time.monotonic()
        if not processes or now >= deadline:
            return
        if progress and now >= next_report:
            still = ", ".join(f"{key} (pid {p.pid}{'; ' + details[key] if details.get(key) else ''})"
                              for key, p in processes.items())
            progress(f"{phase}: still running after {now - began:.0f}s of {seconds:.0f}s: {still}")
            next_report = now + PROGRESS_EVERY
        time.sleep(min(POLL_INTERVAL, max(deadline - now, 0.001)))


def stop_processes(targets: Sequence[StopTarget], *, timeout: float, cold_timeout: float, force: bool,
                   progress: ProgressFn | None = None, cold_signal: int = signal.SIGQUIT) -> dict[str, Shutdown]:
    """Stop the targets together; return each one's outcome (by key), from Shutdown.WARM to STILL_RUNNING.

    1. SIGTERM to each main pid (warm shutdown: running tasks finish), wait up to `timeout`;
    2. `cold_signal` (SIGQUIT: cold shutdown, running tasks are cancelled and, with acks_late,
       re-queued) to those still running, wait up to `cold_timeout`;
    3. with `force`, SIGKILL to those still running and to the children they had when the stop began,
       then wait up to 5 s; without `force`, leave them running and report STILL_RUNNING.
    """
    import psutil

    processes: dict[str, Any] = {}
    children: dict[str, list[Any]] = {}
    for target in targets:
        try:
            process = psutil.Process(target.pid)
            children[target.key] = process.children(recursive=True)
            processes[target.key] = process
        except psutil.NoSuchProcess:
            continue
    outcome = dict.fromkeys((t.key for t in targets), Shutdown.WARM)
    details = {t.key: t.detail for t in targets}
    for process in processes.values():
        _signal(process, signal.SIGTERM)
    _wait(processes, timeout, "warm shutdown", progress, details)
    if processes:
        if progress:
            progress(f"timeout after {timeout:.0f}s: cold shutdown (SIG{signal.Signals(cold_signal).name[3:]}) of "
                     + ", ".join(processes))
        for key, process in processes.items():
            outcome[key] = Shutdown.COLD
            _signal(process, cold_signal)
        _wait(processes, cold_timeout, "cold shutdown", progress, details)
    for key, process in list(processes.items()):
        if not force:
            outcome[key] = Shutdown.STILL_RUNNING
            continue
        if progress:
            progress(f"{key} (pid {process.pid}) still running after the cold shutdown: SIGKILL")
        outcome[key] = Shutdown.KILLED
        for victim in [process, *children.get(key, [])]:
            _signal(victim, signal.SIGKILL)
    _wait({k: p for k, p in processes.items() if outcome[k] is Shutdown.KILLED}, KILL_WAIT, "kill", progress, details)
    return outcome
