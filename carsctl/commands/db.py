"""`carsctl db`: migrations of the database (SQLite embedded, PostgreSQL via DATABASE_URL)."""

from __future__ import annotations

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision."),
            json: JsonOpt = False) -> None:
    """Apply the migrations up to REVISION (default: the newest).

    Example: carsctl db upgrade
    """
    from cars_bot.db.migrate import upgrade as run_upgrade
    from carsctl.health.connectivity import check_database

    cli = obj(ctx)
    check_database(cli.settings)
    result = run_upgrade(cli.settings.database_url, revision)
    if json or cli.json:
        cli.emit_json(result)
    elif result.previous == result.to:
        cli.info(f"database already at revision {result.to}")
    else:
        cli.info(f"database upgraded from {result.previous or 'empty'} to {result.to}")


@app.command("status")
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show the database URL (masked), its revision and whether migrations are pending.

    Exit code 1 when migrations are pending, 69 when the database is unreachable.
    Example: carsctl db status --json
    """
    from carsctl.health.connectivity import check_database

    cli = obj(ctx)
    state = check_database(cli.settings)
    if json or cli.json:
        cli.emit_json(state)
    else:
        from dataclasses import asdict

        from carsctl.render import key_values

        cli.out.print(key_values("Database", asdict(state).items()))
    if not state.up_to_date:
        cli.info("migrations pending: run `carsctl db upgrade`")
        raise typer.Exit(1)
