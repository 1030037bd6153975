"""`carsctl flower`: Flower, Celery's web UI (the seed's `celery -A cars_bot.celery_app flower --port=5555`),
started detached with a pidfile, on loopback unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt
from carsctl.reports import report_started, report_stopped


def flower(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 5555,
    address: Annotated[str, typer.Option("--address", help="Address to listen on.")] = "127.0.0.1",
    basic_auth: Annotated[str | None, typer.Option(
        "--basic-auth", envvar="FLOWER_BASIC_AUTH", show_default=False,
        help="user:password required by the UI (also FLOWER_BASIC_AUTH; never shown in `ps`).")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the Flower carsctl started.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait until it listens.")] = 60.0,
    json: JsonOpt = False,
) -> None:
    """Start Flower detached (log: logs/flower.log), or stop it with --stop.

    Refuses (exit 2) to listen on a non-loopback address without --basic-auth, or with an empty password
    or one shorter than 8 characters. Exit code 0 started or already running, 1 it died during start-up
    (log tail shown) or the port is taken.

    Flower's HTTP API (/api/...) answers 401 unless --basic-auth is set (Flower serves it to
    authenticated users only). Its Broker tab counts each queue's ready messages over all ten
    priorities; `carsctl queues` also shows the unacked and ETA ones.

    Example: carsctl flower --port 5555 && carsctl flower --stop
    """
    from carsctl.lifecycle.flower_node import start_flower, stop_flower
    from carsctl.lifecycle.node_results import StartState

    cli = obj(ctx)
    if stop:
        raise typer.Exit(report_stopped(cli, [stop_flower(cli.settings)], json or cli.json))
    result = start_flower(cli.settings, port=port, address=address, basic_auth=basic_auth,
                                    timeout=timeout)
    report_started(cli, [result], json or cli.json)
    if result.state is not StartState.FAILED:
        cli.info(f"Flower: {result.url}")
        if result.state is StartState.STARTED and not basic_auth:
            cli.info("its API (/api/...) answers 401 without --basic-auth; the web UI works as it is")
        cli.info("Broker tab: ready messages per queue (all ten priorities); "
                 "`carsctl queues` also shows unacked and ETA messages")
