"""`carsctl control`: change the running workers (limits, pool, queues, shutdown); each table shows what
the nodes report after the change, not the request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from carsctl.context import obj
from carsctl.options import DestinationOpt, JsonOpt, ReplyTimeoutOpt, YesOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from carsctl.cluster.runtime_control import ControlReport

app = typer.Typer(help="Change the running workers: rate-limit, time-limit, pool, autoscale, add-consumer, "
                       "cancel-consumer, shutdown.", no_args_is_help=True)

TaskArg = Annotated[str, typer.Argument(metavar="TASK", help="Task alias (process-post) or full name.")]
QueueArg = Annotated[str, typer.Argument(metavar="QUEUE", help="A queue the app declares, e.g. ai_processing.")]


def _show(ctx: typer.Context, report: ControlReport, json: bool) -> None:
    """Render the per-node table (or JSON); exit 1 when a node refused the change."""
    from carsctl import render
    from carsctl.errors import OperationFailed

    cli = obj(ctx)
    if json or cli.json:
        cli.emit_json(report)
    else:
        cli.out.print(render.control_table(report))
        cli.info(safe(f"{report.action} {report.request}: {render.plural(report.changed, 'node')} changed "
                      f"in {report.elapsed_ms:.0f} ms"))
    if report.silent_unnamed:
        cli.info(safe(f"warning: {report.silent_unnamed} worker(s) not started by carsctl did not reply"))
    for node in report.not_running:
        cli.info(safe(f"warning: {node} is not running (see `carsctl worker status`)"))
    if report.refused:
        reasons = sorted({n.reply for n in report.nodes if n.outcome == "refused"})
        raise OperationFailed(f"{render.plural(report.refused, 'node')} refused: {'; '.join(reasons)}")


@app.command("rate-limit")
def rate_limit(ctx: typer.Context, task: TaskArg,
               rate: Annotated[str, typer.Argument(metavar="RATE", help="Per s/m/h: 10/m, 2/s; 0 removes it.")],
               destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Limit how often each worker starts a task; shows the rate each node now applies.

    \b
    Example: carsctl control rate-limit process-post 10/m -d ai
    """
    from carsctl.cluster.runtime_control import set_rate_limit

    cli = obj(ctx)
    _show(ctx, set_rate_limit(cli.celery_app, task, rate, destination=destination, timeout=timeout,
                              settings=cli.settings), json)


@app.command("time-limit")
def time_limit(ctx: typer.Context, task: TaskArg,
               soft: Annotated[float, typer.Argument(metavar="SOFT", help="Seconds until SoftTimeLimitExceeded.")],
               hard: Annotated[float | None, typer.Argument(
                   metavar="HARD", help="Seconds until the task's process is killed. [default: the task's own]",
                   show_default=False)] = None,
               destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Set a task's soft and hard time limits; shows the limits each node now applies.

    \b
    Example: carsctl control time-limit process-post 60 90
    """
    from carsctl.cluster.runtime_control import set_time_limit

    cli = obj(ctx)
    _show(ctx, set_time_limit(cli.celery_app, task, soft, hard, destination=destination, timeout=timeout,
                              settings=cli.settings), json)


@app.command("pool")
def pool(ctx: typer.Context,
         change: Annotated[Literal["grow", "shrink"], typer.Argument(metavar="grow|shrink", help="Grow or shrink.")],
         n: Annotated[int, typer.Argument(metavar="N", help="Processes to add or remove.")] = 1,
         destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Add or remove pool processes (prefork); shows each node's processes before and after.

    \b
    Example: carsctl control pool grow 2 -d ai
    """
    from carsctl.cluster.runtime_control import resize_pool

    cli = obj(ctx)
    _show(ctx, resize_pool(cli.celery_app, change, n, destination=destination, timeout=timeout,
                           settings=cli.settings), json)


@app.command("autoscale")
def autoscale(ctx: typer.Context,
              maximum: Annotated[int, typer.Argument(metavar="MAX", help="Most pool processes.")],
              minimum: Annotated[int, typer.Argument(metavar="MIN", help="Fewest pool processes.")],
              destination: DestinationOpt = None, timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Change the autoscale range of workers started with --autoscale; shows the range each now uses.

    \b
    Example: carsctl control autoscale 8 2 -d ai
    """
    from carsctl.cluster.runtime_control import set_autoscale

    cli = obj(ctx)
    _show(ctx, set_autoscale(cli.celery_app, maximum, minimum, destination=destination, timeout=timeout,
                             settings=cli.settings), json)


@app.command("add-consumer")
def add_consumer(ctx: typer.Context, queue: QueueArg, destination: DestinationOpt = None,
                 timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Make workers consume from one more queue; shows the queues each node now consumes.

    \b
    Example: carsctl control add-consumer ai_processing -d worker
    """
    from carsctl.cluster.runtime_control import add_consumer as add

    cli = obj(ctx)
    _show(ctx, add(cli.celery_app, queue, destination=destination, timeout=timeout, settings=cli.settings), json)


@app.command("cancel-consumer")
def cancel_consumer(ctx: typer.Context, queue: QueueArg, destination: DestinationOpt = None,
                    timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Make workers stop consuming from a queue; shows the queues each node still consumes.

    \b
    Example: carsctl control cancel-consumer sheets_sync -d worker
    """
    from carsctl.cluster.runtime_control import cancel_consumer as cancel

    cli = obj(ctx)
    _show(ctx, cancel(cli.celery_app, queue, destination=destination, timeout=timeout, settings=cli.settings), json)


@app.command("shutdown")
def shutdown(ctx: typer.Context, node: Annotated[str, typer.Argument(metavar="NODE", help="ai or ai@host.")],
             yes: YesOpt = False,
             timeout: Annotated[float, typer.Option("--timeout", min=0.0, metavar="SECONDS",
                                                    help="Seconds to wait until the node stops answering.")] = 10.0,
             json: JsonOpt = False) -> None:
    """Shut a worker node down (warm: running tasks finish first), after asking.

    \b
    Example: carsctl control shutdown ai --yes
    """
    from carsctl.cluster.runtime_control import ShutdownOutcome
    from carsctl.cluster.runtime_control import shutdown as stop
    from carsctl.errors import OperationFailed

    cli = obj(ctx)
    if not yes:
        cli.confirm_or_refuse(f"Shut down worker {node}? Its running tasks finish first.", f"shut down {node}")
    report = stop(cli.celery_app, node, timeout=timeout, settings=cli.settings)
    if json or cli.json:
        cli.emit_json(report)
    if report.outcome == ShutdownOutcome.STILL_RUNNING:
        raise OperationFailed(f"{report.node} still runs after {report.waited_s:g}s (running tasks finish "
                              "first)", hint="wait, or stop it with `carsctl worker stop NODE --force`")
    cli.info(safe(f"{report.node} shut down: stopped after {report.waited_s:g}s"))
