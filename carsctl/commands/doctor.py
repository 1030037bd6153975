"""`carsctl doctor`: find the misconfigurations behind the known pitfalls, each with a one-line fix."""

from __future__ import annotations

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt, ReplyTimeoutOpt


def doctor(ctx: typer.Context, json: JsonOpt = False, timeout: ReplyTimeoutOpt = 1.0) -> None:
    """Check broker, database, visibility timeout, result expiry, acks, beats, reply keys, clocks, logs.

    Exit code 1 when a problem is found (warnings alone exit 0).

    \b
    Example: carsctl doctor
    """
    from carsctl.health.checkup import run_checks

    cli = obj(ctx)
    report = run_checks(cli.celery_app, cli.settings, timeout)
    if json or cli.json:
        cli.emit_json(report)
    else:
        from carsctl.render import doctor_report

        cli.out.print(doctor_report(report))
    if not report.healthy:
        raise typer.Exit(1)
