"""`carsctl up` / `carsctl down`: the whole stack in the right order (replaces running the seed's Makefile
targets one by one).

`up`: the embedded broker (only when no REDIS_URL / CELERY_BROKER_URL is set), database migrations,
the worker nodes, beat. `down`: Flower (if carsctl started it), beat, the worker nodes, the embedded
broker. Both are idempotent: what already runs (or is already stopped) is left as it is.
"""

from __future__ import annotations

from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import (
    ColdTimeoutOpt,
    ForceOpt,
    JsonOpt,
    LoglevelOpt,
    NodeOpt,
    PoolOpt,
    StartTimeoutOpt,
    StopTimeoutOpt,
)
from carsctl.reports import report_started, report_stopped


def up(ctx: typer.Context, node: NodeOpt = None, pool: PoolOpt = None,
       concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, max=10_000, show_default=False,
                                                       help="Concurrency of nodes that do not set their own.")] = None,
       loglevel: LoglevelOpt = None,
       no_beat: Annotated[bool, typer.Option("--no-beat", help="Do not start beat.")] = False,
       timeout: StartTimeoutOpt = 60.0, json: JsonOpt = False) -> None:
    """Bring the stack up: embedded broker (no REDIS_URL), migrations, worker nodes, beat, the monitor.

    The monitor is started when Telegram is configured for it, else skipped with a one-line notice.

    Returns once every node answers a ping and beat has ticked. Exit code 0 up, 1 a step failed (its
    log tail is shown), 69 broker or database unreachable.

    Example: carsctl up --node main:default,publishing,sheets_sync,monitoring --node ai:ai_processing:2
    """
    from carsctl.lifecycle.node_specs import stack_layout
    from carsctl.lifecycle.stack_steps import bring_up

    cli = obj(ctx)
    nodes = stack_layout(cli.settings, node or [], pool=pool, concurrency=concurrency, loglevel=loglevel)
    steps = bring_up(cli.settings, nodes, beat=not no_beat, timeout=timeout,
                               app_loader=lambda: cli.celery_app, progress=cli.info)
    if json or cli.json:
        cli.emit_json(steps)
    report_started(cli, [*steps.workers, *[r for r in (steps.beat, steps.monitor) if r]], json=False, refused_ok=True)
    cli.info("the stack is up: `carsctl status` shows it, `carsctl down` stops it")


def down(ctx: typer.Context, timeout: StopTimeoutOpt = 60.0, cold_timeout: ColdTimeoutOpt = 10.0,
         force: ForceOpt = False,
         keep_broker: Annotated[bool, typer.Option("--keep-broker", help="Leave the embedded Redis running.")] = False,
         json: JsonOpt = False) -> None:
    """Bring the stack down in reverse order: Flower, the monitor, beat, worker nodes (gracefully), broker.

    Exit code as `carsctl worker stop`: 0 stopped, 10 cold shutdown, 11 killed, 1 still running (then
    the broker is left running so the remaining worker can still ack).

    Example: carsctl down --timeout 120
    """
    from carsctl.lifecycle.stack_steps import bring_down

    cli = obj(ctx)
    steps = bring_down(cli.settings, timeout=timeout, cold_timeout=cold_timeout, force=force,
                                 keep_broker=keep_broker, app_loader=lambda: cli.celery_app, progress=cli.info)
    if json or cli.json:
        cli.emit_json(steps)
    stopped = [r for r in (steps.flower, steps.monitor, steps.beat, *steps.workers) if r is not None]
    report_stopped(cli, stopped, json=False)
    if steps.broker is not None and steps.broker.stopped:
        cli.info(f"embedded Redis stopped (pid {steps.broker.pid})")
    elif not stopped:
        cli.info(f"nothing carsctl started from {steps.state_dir} is running")
    raise typer.Exit(steps.exit_code)
