"""`carsctl config`: the effective configuration, secrets masked, with where each value came from."""

from __future__ import annotations

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Print every setting (secrets masked) and its source: default, .env or environment.

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


def _masked(url: str) -> str:
    from cars_bot.secret_masking import mask_url

    return mask_url(url)


def _sessions(settings: object) -> dict[str, str]:
    from cars_bot.publishing.telegram import session_states

    return session_states(settings)
