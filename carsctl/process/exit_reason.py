"""Why a node carsctl started is gone, told from what it left behind: its pidfile and its log.

A node that exits cleanly (SIGTERM, a remote shutdown) logs its shutdown and removes its pidfile. A
node killed by SIGKILL or the out-of-memory killer logs nothing and leaves its pidfile; a node that hit
an unrecoverable error logs it (CRITICAL/ERROR and a traceback) before it exits. The exit status itself
is not available: the node was not this process's child.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carsctl.process.logtail import last_lines, record_level

#: How much of the log end is read, and how many error lines are kept.
SCANNED_LINES = 400
KEPT_ERRORS = 5
#: Lines the worker and beat log when they stop on purpose.
SHUTDOWN_MARKS = ("Got shutdown from remote", "worker: Warm shutdown", "worker: Cold shutdown",
                  "beat: Shutting down", "Restarting celery worker")
READY_MARKS = (" ready.", "beat: Starting...")


@dataclass(frozen=True, slots=True)
class ExitDiagnosis:
    """A gone node: did it crash, why as far as its traces tell, and the last error lines it logged."""

    crashed: bool
    reason: str
    last_errors: tuple[str, ...]


def diagnose(logfile: str | Path | None, pidfile_left: bool) -> ExitDiagnosis:
    """Read the end of a gone node's log (since it last became ready) and say how it ended."""
    lines = last_lines(Path(logfile), SCANNED_LINES) if logfile else []
    start = max((i for i, line in enumerate(lines) if any(mark in line for mark in READY_MARKS)), default=-1)
    run = lines[start + 1:]
    errors = error_lines(run)
    fatal = any(record_level(line) == "CRITICAL" for line in run)  # Celery's "Unrecoverable error"
    stopped_on_purpose = any(mark in line for line in run for mark in SHUTDOWN_MARKS)
    if fatal or (errors and not stopped_on_purpose and not pidfile_left):
        return ExitDiagnosis(True, f"crashed: {_exception_line(run) or errors[-1]}", errors)
    if pidfile_left and not stopped_on_purpose:  # errors logged before (a task's) are shown, not blamed
        return ExitDiagnosis(True, "crashed: killed without logging a shutdown (SIGKILL or the out-of-memory "
                                   "killer)", errors)
    how = "a remote shutdown" if any("Got shutdown from remote" in line for line in run) else "a signal"
    return ExitDiagnosis(False, f"exited after {how} (stopped outside carsctl)", errors)


def error_lines(lines: list[str]) -> tuple[str, ...]:
    """The last ERROR/CRITICAL records' first lines and the exception lines ending tracebacks (secrets
    masked: a connection error names the URL it failed on)."""
    found = []
    for line in lines:
        level = record_level(line)
        if level in ("ERROR", "CRITICAL") or (level is None and _is_exception_line(line)):
            found.append(_masked(line.strip()))
    return tuple(found[-KEPT_ERRORS:])


def _masked(line: str) -> str:
    from cars_bot.config import ConfigError, get_settings
    from cars_bot.secret_masking import mask_secrets_in

    try:
        settings = get_settings()
    except ConfigError:
        settings = None
    return mask_secrets_in(line, settings)


def _is_exception_line(line: str) -> bool:
    """`ValueError: message` / `redis.exceptions.ConnectionError: ...` closing a traceback."""
    head = line.split(":", 1)[0]
    return bool(head) and not line[:1].isspace() and head.replace(".", "").replace("_", "").isalnum() \
        and (head.endswith("Error") or head.endswith("Exception") or head.endswith("Exit"))


def _exception_line(lines: list[str]) -> str | None:
    return next((_masked(line.strip()) for line in reversed(lines) if _is_exception_line(line)), None)
