"""`carsctl status`: is everything OK? Broker, database, workers, beat, queues, failed tasks, monitor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from carsctl.context import CliContext, obj
from carsctl.options import JsonOpt, ReplyTimeoutOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from celery import Celery

WatchOpt = Annotated[float | None, typer.Option("--watch", "-w", min=0.5, metavar="SECONDS",
                                                help="Refresh every SECONDS until Ctrl-C.")]


def status(ctx: typer.Context, json: JsonOpt = False, watch: WatchOpt = None,
           timeout: ReplyTimeoutOpt = 1.0) -> None:
    """One screen: broker, database, worker nodes, beat, queue depths, failed tasks, monitor service.

    Exit code 0 when all is well, 1 when something carsctl started is down or silent or a queue's
    messages wait with no worker consuming it, 69 when the broker or the database is unreachable.
    Replaces `make celery-status`.

    \b
    Example: carsctl status --watch 2
    """
    from carsctl.health.overview import gather

    cli = obj(ctx)
    app = None  # on Redis, gather reads the broker over a plain socket (no Celery import)
    if watch:
        _watch(cli, app, watch, timeout)
        return
    report = gather(app, cli.settings, timeout)
    if json or cli.json:
        cli.emit_json(report)
    else:
        from carsctl.render import status_screen

        cli.out.print(status_screen(report))
    for problem in report.problems:
        cli.info(safe(f"problem: {problem}"))
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _watch(cli: CliContext, app: Celery | None, every: float, timeout: float) -> None:
    """Redraw the screen every `every` seconds (one screen after another when not on a terminal);
    Ctrl-C ends it with exit 0."""
    import time

    from rich.live import Live

    from carsctl.health.overview import gather
    from carsctl.render import status_screen

    try:
        if not cli.out.is_terminal:
            while True:
                cli.out.print(status_screen(gather(app, cli.settings, timeout)))
                time.sleep(every)
        with Live(console=cli.out, auto_refresh=False, screen=False) as live:
            while True:
                live.update(status_screen(gather(app, cli.settings, timeout)), refresh=True)
                time.sleep(every)
    except KeyboardInterrupt:
        return
