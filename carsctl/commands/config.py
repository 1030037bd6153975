"""`carsctl config`: the effective configuration, secrets masked, with where each value came from."""

from __future__ import annotations

from typing import Any

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Print every setting (secrets masked) and its source: default, .env or environment; and each
    filter's effective value with its source (sheet "Настройки фильтров", environment, default).

    Example: carsctl config show --json | jq '.variables[] | select(.source != "default")'
    """
    cli = obj(ctx)
    settings = cli.settings
    data = {
        "variables": settings.describe(),
        "derived": {
            "broker_url": _masked(settings.broker_url),
            "result_backend": _masked(settings.result_backend_url),
            "database_url": _masked(settings.database_url),
            "embedded_broker": settings.uses_embedded_broker,
            "state_dir": str(settings.home),
            "log_dir": str(settings.log_dir),
        },
        "integrations": settings.integrations(),
        "sessions": _sessions(settings),
        "filters": _filters(settings),
    }
    if json or cli.json:
        cli.emit_json(data)
        return
    from carsctl.render import key_values, table

    cli.out.print(table("Configuration", ("variable", "value", "source"),
                        ((v.name, "" if v.value is None else v.value, v.source) for v in settings.describe())))
    cli.out.print(key_values("Effective", data["derived"].items()))
    cli.out.print(key_values("Integrations", data["integrations"].items()))
    if data["sessions"]:
        cli.out.print(key_values("Sessions", data["sessions"].items()))
    report = data["filters"]
    cli.out.print(table(f"Filters (sheet values {report.sheet_values})",
                        ("variable", "value", "source", "sheet problem"),
                        ((f.name, "" if f.value is None else f.value, f.source, f.sheet_error or "")
                         for f in report.filters)))


def _filters(settings: Any) -> Any:
    """Each filter's effective value and whether it came from the sheet, the environment or the default."""
    from cars_bot.sheets.filter_sync import describe_filters

    return describe_filters(settings)


def _masked(url: str) -> str:
    from cars_bot.secret_masking import mask_url

    return mask_url(url)


def _sessions(settings: object) -> dict[str, str]:
    from cars_bot.publishing.telegram import session_states

    return session_states(settings)
