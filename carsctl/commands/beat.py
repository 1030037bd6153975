"""`carsctl beat`: the periodic-task scheduler (replaces `make run-celery-beat`).

Only one beat may run against a broker: beat holds a lock in Redis (`cars_bot:beat:lock`, refreshed on
every tick), so a second `beat start` is refused even from another directory or host. Beat writes a
heartbeat on every tick; `beat status` shows it with each periodic task's last and next run.

Exit codes of `beat status`: 0 running and ticking, 3 not running, 4 running but not ticking (no recent
heartbeat), 5 stale pidfile, 69 broker unreachable. `beat start`: 0 started or already running, 1
refused (another beat holds the lock) or died during start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from carsctl.context import CliContext, obj
from carsctl.options import ColdTimeoutOpt, ForceOpt, JsonOpt, LoglevelOpt, StartTimeoutOpt, StopTimeoutOpt
from carsctl.reports import report_started, report_stopped

if TYPE_CHECKING:
    from carsctl.lifecycle.beat_node import BeatStatus

app = typer.Typer(help="Beat, the periodic-task scheduler: start, stop, restart, status.", no_args_is_help=True)


@app.command("start")
def start(ctx: typer.Context, loglevel: LoglevelOpt = None, timeout: StartTimeoutOpt = 60.0,
          json: JsonOpt = False) -> None:
    """Start beat detached (log: logs/celery_beat.log); returns once its first heartbeat is in Redis.

    Refused (exit 1) while another beat holds this broker's lock, wherever it runs.

    Example: carsctl beat start
    """
    from carsctl.lifecycle.beat_node import start_beat

    cli = obj(ctx)
    result = start_beat(cli.settings, loglevel=loglevel, timeout=timeout, progress=cli.info)
    report_started(cli, [result], json or cli.json)


@app.command("stop")
def stop(ctx: typer.Context, timeout: StopTimeoutOpt = 30.0, cold_timeout: ColdTimeoutOpt = 10.0,
         force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Stop beat (SIGTERM: it saves its schedule and releases its lock).

    Exit code 0 stopped, 10 needed SIGQUIT, 11 killed, 1 still running.

    Example: carsctl beat stop
    """
    from carsctl.lifecycle.beat_node import stop_beat

    cli = obj(ctx)
    result = stop_beat(cli.settings, timeout=timeout, cold_timeout=cold_timeout, force=force,
                                 progress=cli.info)
    raise typer.Exit(report_stopped(cli, [result], json or cli.json))


@app.command("restart")
def restart(ctx: typer.Context, timeout: StopTimeoutOpt = 30.0, force: ForceOpt = False,
            json: JsonOpt = False) -> None:
    """Stop beat and start it again with the log level it ran with.

    Example: carsctl beat restart
    """
    from carsctl.lifecycle.beat_node import start_beat, stop_beat
    from carsctl.lifecycle.node_results import StopOutcome

    cli = obj(ctx)
    stopped = stop_beat(cli.settings, timeout=timeout, force=force, progress=cli.info)
    report_stopped(cli, [stopped], json=False)
    if stopped.outcome is StopOutcome.STILL_RUNNING:
        raise typer.Exit(1)
    report_started(cli, [start_beat(cli.settings, progress=cli.info)], json or cli.json)


def _schedule_rows(entries: dict[str, Any]) -> list[tuple[str, ...]]:
    from datetime import datetime

    from carsctl.render import ago

    def when(value: str | None) -> str:
        return f"{value[:19].replace('T', ' ')} ({ago(datetime.fromisoformat(value))})" if value else "never"

    return [(name, entry.task.rsplit(".", 1)[-1], when(entry.last_run_at), when(entry.next_run_at))
            for name, entry in entries.items()]


def _print_beat(cli: CliContext, row: BeatStatus) -> None:
    from carsctl.render import key_values, table

    tick = (f"{row.tick_at[:19].replace('T', ' ')} UTC ({row.heartbeat_age_seconds:.0f}s ago; stale after "
            f"{row.stale_after_seconds:.0f}s)") if row.tick_at else ""
    holder = row.lock_holder
    pairs = [("status", row.status), ("pid", row.pid), ("last tick", tick),
             ("lock held by", f"{holder.hostname} pid {holder.pid}" if holder else ""),
             ("log", row.logfile), ("note", row.note)]
    cli.out.print(key_values("Beat", [(k, v) for k, v in pairs if v]))
    if row.entries:
        cli.out.print(table("Periodic tasks (UTC)", ("entry", "task", "last run", "next run"),
                            _schedule_rows(row.entries), no_wrap=("entry",)))


@app.command("status")
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Beat's process and heartbeat: last tick, and each periodic task's last and next run.

    Exit code 0 running, 3 not running, 4 running but not ticking, 5 stale pidfile, 69 broker unreachable.

    Example: carsctl beat status --json
    """
    from carsctl.lifecycle.beat_node import beat_status

    cli = obj(ctx)
    row = beat_status(cli.settings)
    if json or cli.json:
        cli.emit_json(row)
    else:
        _print_beat(cli, row)
    raise typer.Exit(row.exit_code)
