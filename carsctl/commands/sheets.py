"""`carsctl sheets`: the admin spreadsheet (the real one, or the local workbook without Google credentials)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="The admin spreadsheet: create its worksheets, show their syncs, sync now.",
                  no_args_is_help=True)

SYNC_KINDS = ("channels", "subscribers", "analytics", "queue")


@app.command("init")
def init(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Create the missing worksheets, the headers they lack and the filter rows; existing cells stay.

    Example: carsctl sheets init
    """
    from cars_bot.sheets.admin import init_workbook
    from cars_bot.sheets.backends import open_workbook

    cli = obj(ctx)
    result = _sheets_call(lambda: init_workbook(open_workbook(cli.settings)))
    if json or cli.json:
        cli.emit_json(result)
        return
    cli.info(f"workbook: {result.backend}")
    cli.info(f"worksheets created: {', '.join(result.created) or 'none'}")
    cli.info(f"headers added to: {', '.join(result.headers_added) or 'none'}")
    cli.info(f"filter rows added: {result.filter_rows_added}")


@app.command("status")
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show each worksheet: present or not, its rows, its last sync and its last error.

    Example: carsctl sheets status --json
    """
    from cars_bot.db.session import session_factory
    from cars_bot.sheets.admin import sheets_status
    from cars_bot.sheets.backends import open_workbook
    cli = obj(ctx)
    _database_ready(cli.settings)

    def look() -> Any:
        with session_factory(cli.settings.database_url)() as session:
            return sheets_status(session, open_workbook(cli.settings))

    result = _sheets_call(look)
    if json or cli.json:
        cli.emit_json(result)
        return
    from carsctl.render import table

    cli.out.print(table(f"Worksheets ({result.backend})",
                        ("worksheet", "present", "rows", "sync", "last sync", "last error"),
                        ((w.worksheet, "yes" if w.present else "no", "" if w.rows is None else w.rows,
                          w.synced_by or "", _when(w.last_sync_at), _error(w.last_error, w.last_error_at))
                         for w in result.worksheets)))
    if any(not w.present for w in result.worksheets):
        cli.info("some worksheets are missing: run `carsctl sheets init`")


@app.command("sync")
def sync(ctx: typer.Context,
         what: Annotated[str, typer.Argument(help="channels (with the filters), subscribers, analytics or queue.",
                                             autocompletion=lambda: list(SYNC_KINDS))] = "channels",
         json: JsonOpt = False) -> None:
    """Run one sync now, here (not through a worker), and record it for `carsctl sheets status`.

    Example: carsctl sheets sync subscribers
    """
    from carsctl.errors import UsageError

    if what not in SYNC_KINDS:
        raise UsageError(f"unknown sync {what!r}: use one of {', '.join(SYNC_KINDS)}")
    from cars_bot.sheets.admin import SyncKind, run_sync

    cli = obj(ctx)
    _database_ready(cli.settings)
    run = _sheets_call(lambda: run_sync(SyncKind(what), cli.settings))
    if json or cli.json:
        cli.emit_json(run)
        return
    from dataclasses import asdict

    from carsctl.render import key_values

    cli.out.print(key_values(f"{what} sync ({run.backend})",
                             ((k, _cell(v)) for k, v in asdict(run.result).items() if v not in ((), []))))


def _cell(value: Any) -> Any:
    """A nested result (the channel sync's filters) as one line."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, tuple | list) else v}"
                         for k, v in value.items() if v not in ((), []))
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return value


def _database_ready(settings: Any) -> None:
    """The database is reachable (else exit 69) and migrated (else exit 1 naming the fix)."""
    from carsctl.errors import OperationFailed
    from carsctl.health.connectivity import check_database

    if not check_database(settings).up_to_date:
        raise OperationFailed("the database is not migrated", hint="run `carsctl db upgrade`")


def _sheets_call(action: Any) -> Any:
    """Run `action`, turning the sheets' typed errors into carsctl's (one line, exit code)."""
    from cars_bot.errors import PermanentError, TransientError
    from carsctl.errors import DependencyUnavailable, OperationFailed

    try:
        return action()
    except TransientError as error:
        raise DependencyUnavailable(f"the spreadsheet is unavailable: {error}") from None
    except PermanentError as error:
        raise OperationFailed(str(error)) from None


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"


def _error(message: str | None, moment: Any) -> str:
    return f"{_when(moment)}: {message}" if message else ""
