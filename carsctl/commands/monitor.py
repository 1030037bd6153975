"""`carsctl monitor`: the Telegram monitor service, which listens to the active source channels and
stores their posts (`python -m cars_bot.monitor`, log: logs/monitor.log).

It needs its own Telegram session: TELEGRAM_API_ID, TELEGRAM_API_HASH and
TELEGRAM_MONITOR_SESSION_STRING. Without them `monitor status` says so (exit 3) and `monitor start`
refuses (exit 2).

Exit codes of `monitor status`: 0 running and listening, 3 not running (or not configured), 4 alive but
not listening (or its heartbeat is stale), 5 stale pidfile, 69 alive but Telegram unreachable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from carsctl.context import CliContext, obj
from carsctl.options import ColdTimeoutOpt, ForceOpt, JsonOpt, LoglevelOpt, StartTimeoutOpt, StopTimeoutOpt
from carsctl.reports import report_started, report_stopped

if TYPE_CHECKING:
    from carsctl.lifecycle.monitor_node import MonitorStatus

app = typer.Typer(help="The Telegram monitor service: start, stop, restart, status.", no_args_is_help=True)


@app.command("start")
def start(ctx: typer.Context, loglevel: LoglevelOpt = None, timeout: StartTimeoutOpt = 60.0,
          json: JsonOpt = False) -> None:
    """Start the monitor detached; returns once it is connected and listening to the channels.

    Refused (exit 2) without TELEGRAM_API_ID, TELEGRAM_API_HASH and TELEGRAM_MONITOR_SESSION_STRING.

    Example: carsctl monitor start
    """
    from carsctl.lifecycle.monitor_node import start_monitor

    cli = obj(ctx)
    report_started(cli, [start_monitor(cli.settings, loglevel=loglevel, timeout=timeout, progress=cli.info)],
                   json or cli.json)


@app.command("stop")
def stop(ctx: typer.Context, timeout: StopTimeoutOpt = 30.0, cold_timeout: ColdTimeoutOpt = 10.0,
         force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Stop the monitor (SIGTERM: it finishes the message or album in hand and saves its position).

    Exit code 0 stopped, 10 needed SIGQUIT, 11 killed, 1 still running.

    Example: carsctl monitor stop
    """
    from carsctl.lifecycle.monitor_node import stop_monitor

    cli = obj(ctx)
    result = stop_monitor(cli.settings, timeout=timeout, cold_timeout=cold_timeout, force=force, progress=cli.info)
    raise typer.Exit(report_stopped(cli, [result], json or cli.json))


@app.command("restart")
def restart(ctx: typer.Context, timeout: StopTimeoutOpt = 30.0, force: ForceOpt = False,
            json: JsonOpt = False) -> None:
    """Stop the monitor and start it again with the log level it ran with.

    Example: carsctl monitor restart
    """
    from carsctl.lifecycle.monitor_node import start_monitor, stop_monitor
    from carsctl.lifecycle.node_results import StopOutcome

    cli = obj(ctx)
    stopped = stop_monitor(cli.settings, timeout=timeout, force=force, progress=cli.info)
    report_stopped(cli, [stopped], json=False)
    if stopped.outcome is StopOutcome.STILL_RUNNING:
        raise typer.Exit(1)
    report_started(cli, [start_monitor(cli.settings, progress=cli.info)], json or cli.json)


def _print_monitor(cli: CliContext, row: MonitorStatus) -> None:
    from carsctl.render import key_values

    failed = "; ".join(f"{name}: {why}" for name, why in row.failed_channels.items())
    pairs = [("status", row.status), ("state", row.listen_state), ("pid", row.pid),
             ("channels", ", ".join(row.channels) if row.listen_state else ""),
             ("not listened to", failed), ("last message", row.last_message_at),
             ("last catch-up", row.last_catch_up_at),
             ("posts stored", row.stored), ("duplicates", row.duplicates), ("FloodWaits", row.flood_waits),
             ("error", row.error), ("log", row.logfile), ("note", row.note)]
    cli.out.print(key_values("Monitor", [(k, v) for k, v in pairs if v not in (None, "")]))


@app.command("status")
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The monitor's process and heartbeat: channels listened to, last message seen, last catch-up.

    Exit code 0 running, 3 not running or not configured, 4 not listening, 5 stale pidfile, 69 Telegram
    unreachable.

    Example: carsctl monitor status --json
    """
    from carsctl.lifecycle.monitor_node import monitor_status

    cli = obj(ctx)
    row = monitor_status(cli.settings)
    if json or cli.json:
        cli.emit_json(row)
    elif not row.configured:
        cli.info(row.note)
    else:
        _print_monitor(cli, row)
    raise typer.Exit(row.exit_code)
