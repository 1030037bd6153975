"""`carsctl schedule`: the periodic tasks beat sends, with their last and next run times."""

from __future__ import annotations

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt
from carsctl.render import safe


def schedule(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The beat schedule as live data: task, schedule, queue, last run and next run.

    Times come from beat's heartbeat while beat runs; otherwise the next crontab run is computed.

    \b
    Example: carsctl schedule --json
    """
    from carsctl.health.beat_schedule import schedule_entries

    cli = obj(ctx)
    report = schedule_entries(cli.celery_app, cli.settings)
    if json or cli.json:
        cli.emit_json(report)
        return
    from carsctl.render import ago, table

    cli.out.print(table("Periodic tasks", ("Entry", "Schedule", "Last run", "Next run"), (
        (e.name, e.schedule, ago(e.last_run_at) or "-",
         ago(e.next_run_at) or "after beat starts") for e in report.entries), no_wrap=("Entry",)))
    cli.info(safe(f"beat: {report.beat.state}"))
