"""`carsctl inspect`: what the workers hold and know, returned as soon as every worker has answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from carsctl.context import CliContext, obj
from carsctl.options import DestinationOpt, JsonOpt, ReplyTimeoutOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from carsctl.cluster.remote_control import Broadcast

app = typer.Typer(help="Ask the running workers: active, reserved, scheduled, stats, registered, revoked, "
                       "queues, ping.", no_args_is_help=True)

TASK_TITLES = {"active": "Active tasks", "reserved": "Reserved (prefetched) tasks",
               "scheduled": "Scheduled (ETA) tasks"}


def run_inspect(ctx: typer.Context, what: str, destination: list[str] | None, timeout: float, json: bool) -> None:
    """Broadcast, report silent and stopped nodes on stderr, render the replies (exit 69 if none)."""
    from carsctl.cluster import remote_control as remote

    cli = obj(ctx)
    # no Celery app: on Redis the broadcast speaks the pidbox itself (remote_control loads the app otherwise)
    outcome = remote.inspect(None, what, destination=destination or None, timeout=timeout, settings=cli.settings)
    remote.require_replies(outcome, settings=cli.settings)  # names the nodes that answer
    _warn_missing(cli, outcome)
    data = remote.inspect_data(outcome)
    if json or cli.json:
        cli.emit_json(data)
        return
    from carsctl import render

    if what in TASK_TITLES:
        if not data.rows:
            cli.info(safe(f"no {what} tasks on {len(outcome.replies)} worker(s)"))
            return
        cli.out.print(render.task_table(TASK_TITLES[what], data.rows, kind=what))
    else:
        cli.out.print(render.node_table(outcome.command, data.rows))
    cli.info(safe(f"{len(outcome.replies)} worker(s) replied in {outcome.elapsed_ms:.0f} ms"))


def _warn_missing(cli: CliContext, outcome: Broadcast) -> None:
    for node in outcome.silent:
        cli.info(safe(f"warning: {node} did not reply within {outcome.timeout:g}s"))
    if outcome.silent_unnamed:
        cli.info(safe(f"warning: {outcome.silent_unnamed} worker(s) not started by carsctl did not reply "
                 f"within {outcome.timeout:g}s"))
    for node in outcome.not_running:
        cli.info(safe(f"warning: {node} is not running (carsctl started it; see `carsctl worker status`)"))


@app.command("active")
def active(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
           json: JsonOpt = False) -> None:
    """Tasks running now: name, id, arguments, worker, runtime so far.

    \b
    Example: carsctl inspect active -d ai@myhost
    """
    run_inspect(ctx, "active", destination, timeout, json)


@app.command("reserved")
def reserved(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
             json: JsonOpt = False) -> None:
    """Tasks a worker has prefetched and will run next.

    \b
    Example: carsctl inspect reserved --json
    """
    run_inspect(ctx, "reserved", destination, timeout, json)


@app.command("scheduled")
def scheduled(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
              json: JsonOpt = False) -> None:
    """Tasks with an ETA or countdown that a worker holds until they are due.

    \b
    Example: carsctl inspect scheduled
    """
    run_inspect(ctx, "scheduled", destination, timeout, json)


@app.command("stats")
def stats(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
          json: JsonOpt = False) -> None:
    """Per worker: pid, pool, concurrency, tasks processed, uptime, memory.

    \b
    Example: carsctl inspect stats
    """
    run_inspect(ctx, "stats", destination, timeout, json)


@app.command("registered")
def registered(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
               json: JsonOpt = False) -> None:
    """The tasks each worker knows.

    \b
    Example: carsctl inspect registered -d worker@myhost
    """
    run_inspect(ctx, "registered", destination, timeout, json)


@app.command("revoked")
def revoked(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
            json: JsonOpt = False) -> None:
    """Task ids each worker has been told to revoke.

    \b
    Example: carsctl inspect revoked
    """
    run_inspect(ctx, "revoked", destination, timeout, json)


@app.command("queues")
def queues(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
           json: JsonOpt = False) -> None:
    """The queues each worker consumes from.

    \b
    Example: carsctl inspect queues
    """
    run_inspect(ctx, "queues", destination, timeout, json)


@app.command("ping")
def ping(ctx: typer.Context, destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0,
         json: JsonOpt = False) -> None:
    """Which workers answer remote control (exit 69 when none does).

    \b
    Example: carsctl inspect ping -d ai@myhost --timeout 5
    """
    run_inspect(ctx, "ping", destination, timeout, json)
