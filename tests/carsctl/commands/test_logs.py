"""`carsctl logs`: last lines, record-aware filters, following across rotation by rename, clean Ctrl-C."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.carsctl.cli import invoke


def logs(*args: str):
    """`carsctl logs ...` in-process; a traceback may be the log's content, never carsctl's own."""
    from typer.testing import CliRunner

    from cars_bot.config import reset_settings
    from carsctl.app import app

    reset_settings()
    result = CliRunner().invoke(app, ["logs", *args], catch_exceptions=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result

TASK_ID = "0c186cb8-9ba4-4093-865a-a38ce372dc9d"
LOG = f"""[2026-05-01 10:00:00,001: INFO/MainProcess] Connected to redis
[2026-05-01 10:00:01,002: INFO/MainProcess] Task process_post_task[{TASK_ID}] received
[2026-05-01 10:00:01,010: ERROR/ForkPoolWorker-1] Task process_post_task[{TASK_ID}] raised: ValueError('bad')
Traceback (most recent call last):
  File "cars_bot/ai/pipeline.py", line 10, in process_post
ValueError: bad [bold]markup[/bold]
[2026-05-01 10:00:02,000: WARNING/MainProcess] Substantial drift from w2@host
[2026-05-01 10:00:03,000: INFO/MainProcess] Task sync_channels_task[11111111-2222-3333-4444-555555555555] received
"""


def write_log(settings, name: str = "celery_worker.log", text: str = LOG) -> Path:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    path = settings.log_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def test_last_lines(settings) -> None:
    write_log(settings)
    result = logs("-n", "2")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == LOG.splitlines()[-2:]


def test_level_filter_keeps_a_traceback_with_its_record(settings) -> None:
    write_log(settings)
    result = logs("worker", "--level", "warning", "-n", "100")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[2026-05-01 10:00:01,010: ERROR") and len(lines) == 5
    assert lines[3] == "ValueError: bad [bold]markup[/bold]"  # printed as is, not as markup
    assert "WARNING" in lines[4]


def test_task_id_and_grep_filters(settings) -> None:
    write_log(settings)
    by_task = logs("--task-id", TASK_ID, "-n", "100").stdout.splitlines()
    assert len(by_task) == 5 and all("sync_channels" not in line for line in by_task)
    grep = invoke("logs", "--grep", "DRIFT", "-n", "100").stdout.splitlines()
    assert grep == [LOG.splitlines()[6]]


def test_json_lines_and_node_logs_from_carsctl_state(settings) -> None:
    from carsctl.process.nodes import NodeState, save_node

    path = write_log(settings, "ai.log", LOG)
    save_node(settings, NodeState(name="ai", hostname="ai@host", logfile=str(path)))
    result = invoke("logs", "ai", "-n", "1", "--json")
    record = json.loads(result.stdout)
    assert record["source"] == "ai" and record["level"] == "INFO" and "sync_channels" in record["line"]


def test_unknown_target_is_a_usage_error(settings) -> None:
    write_log(settings, "monitor_x.log")
    result = invoke("logs", "nosuch")
    assert result.exit_code == 2 and "no log for 'nosuch'" in result.stderr and "Traceback" not in result.output


def test_follower_reads_across_rotation_by_rename_and_truncation(tmp_path) -> None:
    from carsctl.process.logtail import Follower, LogSource

    path = tmp_path / "worker.log"
    path.write_text("old line\n")
    follower = Follower(LogSource("worker", path))
    with open(path, "a") as handle:
        handle.write("first\nsecond, half")
    assert follower.poll() == ["first"]
    with open(path, "a") as handle:
        handle.write(" done\nlast before rotation\n")
    path.rename(tmp_path / "worker.log.1")  # the rotation: renamed away...
    assert follower.poll() == ["second, half done", "last before rotation"]
    path.write_text("after rotation\n")  # ...and a new file under the old name
    assert follower.poll() == ["after rotation"]
    path.write_text("truncated\n")  # copytruncate-style: same file, shorter
    assert follower.poll() == ["truncated"]
    follower.close()


def test_follow_in_a_real_process_across_a_rename_and_ctrl_c(settings, carsctl_process) -> None:
    path = write_log(settings, text="[2026-05-01 10:00:00,000: INFO/MainProcess] before\n")
    watched = carsctl_process("logs", "-f", "-n", "1", "--level", "info")
    # The last line is read up to where the follower starts, so once it is printed, whatever is
    # appended from now on is followed.
    watched.wait_for(lambda lines: any(line.endswith("] before") for line in lines))
    with open(path, "a") as handle:
        handle.write("[2026-05-01 10:00:01,000: INFO/MainProcess] appended\n")
    watched.wait_for(lambda lines: any(line.endswith("] appended") for line in lines))
    path.rename(path.with_suffix(".log.1"))
    path.write_text("[2026-05-01 10:00:02,000: DEBUG/MainProcess] hidden by --level\n"
                    "[2026-05-01 10:00:02,000: ERROR/MainProcess] in the new file\n")
    watched.wait_for(lambda lines: any(line.endswith("] in the new file") for line in lines))
    code, stdout, stderr = watched.interrupt()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert [line.split("] ", 1)[1] for line in stdout] == ["before", "appended", "in the new file"]


def test_a_line_written_between_the_tail_and_the_follow_is_shown_once(tmp_path) -> None:
    from carsctl.process.logtail import LogSource, log_lines

    path = tmp_path / "worker.log"
    path.write_text("one\ntwo\n")
    deadline = time.monotonic() + 10  # a lost line would otherwise be waited for forever
    stream = log_lines([LogSource("worker", path)], lines=5, follow_on=True, stop=lambda: time.monotonic() > deadline)
    assert next(stream).line == "one"  # the follower is open at the end of "two" from here on
    with open(path, "a") as handle:
        handle.write("three\n")  # written while the last lines are still being shown
    rest = [next(stream, None) for _ in range(2)]
    stream.close()
    assert [item.line if item else None for item in rest] == ["two", "three"]
