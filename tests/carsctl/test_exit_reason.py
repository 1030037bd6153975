"""How a gone node ended, told from its pidfile and log (`process/exit_reason.py`)."""

from __future__ import annotations

from pathlib import Path

from carsctl.process.exit_reason import diagnose

READY = "[2026-11-30 06:12:46,506: INFO/MainProcess] ai@vm ready."
EARLIER_ERROR = "[2026-11-30 06:00:00,000: ERROR/MainProcess] an error of an earlier run"


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "worker.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_unrecoverable_error_is_a_crash_with_its_exception_and_error_lines(tmp_path) -> None:
    log = _log(tmp_path, EARLIER_ERROR, READY,
               "[2026-11-30 06:13:00,000: CRITICAL/MainProcess] Unrecoverable error: ConnectionError('Error 111')",
               "Traceback (most recent call last):",
               '  File "/x/celery/worker/worker.py", line 202, in start',
               "redis.exceptions.ConnectionError: Error 111 connecting to redis://:hunter2pass@db:6379. Refused.")
    found = diagnose(log, pidfile_left=False)
    assert found.crashed
    assert found.reason == ("crashed: redis.exceptions.ConnectionError: Error 111 connecting to "
                            "redis://:****@db:6379. Refused.")
    assert len(found.last_errors) == 2 and "Unrecoverable error" in found.last_errors[0]
    assert EARLIER_ERROR not in found.last_errors  # only this run's lines (since it became ready)


def test_a_pidfile_left_without_a_logged_shutdown_is_a_kill(tmp_path) -> None:
    found = diagnose(_log(tmp_path, READY, "[2026-11-30 06:13:00,000: INFO/MainProcess] Task x succeeded"), True)
    assert found.crashed and "killed without logging a shutdown" in found.reason and found.last_errors == ()


def test_a_logged_shutdown_is_no_crash(tmp_path) -> None:
    log = _log(tmp_path, READY, "[2026-11-30 06:13:25,016: WARNING/MainProcess] Got shutdown from remote")
    found = diagnose(log, pidfile_left=False)
    assert not found.crashed and found.reason == "exited after a remote shutdown (stopped outside carsctl)"
    assert not diagnose(None, pidfile_left=False).crashed  # no log, no pidfile: nothing says it crashed


def test_a_kill_after_a_task_failed_is_blamed_on_the_kill_and_shows_the_error(tmp_path) -> None:
    log = _log(tmp_path, READY,
               "[2026-11-30 06:13:00,000: ERROR/MainProcess] Task x[1] raised unexpected: ValueError('bad post')",
               "Traceback (most recent call last):", '  File "/x.py", line 1, in f', "ValueError: bad post")
    found = diagnose(log, pidfile_left=True)
    assert found.crashed and "killed without logging a shutdown" in found.reason
    assert found.last_errors[-1] == "ValueError: bad post"
