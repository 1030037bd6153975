"""`carsctl worker`: start, stop, restart and check Celery worker nodes (replaces `make run-celery-worker`
and `make stop-celery`).

Exit codes of `worker status` (a systemd/Kubernetes probe can use them): 0 running, 3 not running,
4 running but not answering a ping, 5 crashed or stale pidfile, 69 broker unreachable; with several nodes, the
highest. Exit codes of `worker stop`/`restart`: 0 stopped gracefully (or was not running), 10 needed a
cold shutdown (running tasks re-queued), 11 needed SIGKILL (--force), 1 still running (no --force).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from carsctl.context import CliContext, obj
from carsctl.options import (
    ColdTimeoutOpt,
    ForceOpt,
    JsonOpt,
    LoglevelOpt,
    PoolOpt,
    StartTimeoutOpt,
    StopTimeoutOpt,
)
from carsctl.reports import report_started, report_status, report_stopped

app = typer.Typer(help="Worker nodes: start, stop, restart, status.", no_args_is_help=True)

NodesArg = Annotated[list[str] | None, typer.Argument(
    metavar="NODE...", help="Node names (a node is NAME@host in Celery). Default for start: one node 'worker'; "
         "for stop/restart/status: every node carsctl started.", show_default=False)]


def _loader(cli: CliContext) -> Any:
    return lambda: cli.celery_app


@app.command("start")
def start(
    ctx: typer.Context,
    nodes: NodesArg = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, max=10_000, show_default=False,
                                                    help="Pool processes/threads. [default: 4]")] = None,
    queues: Annotated[str | None, typer.Option("--queues", "-Q", show_default=False,
                                               help="Comma list of queues. [default: all five]")] = None,
    pool: PoolOpt = None,
    autoscale: Annotated[str | None, typer.Option("--autoscale", help="MAX,MIN pool size (instead of -c).")] = None,
    loglevel: LoglevelOpt = None,
    include: Annotated[str | None, typer.Option("--include", "-I", help="Comma list of extra task modules.")] = None,
    foreground: Annotated[bool, typer.Option("--foreground", help="Run one node in this terminal (systemd, "
                                                                  "containers); logs to stderr.")] = False,
    timeout: StartTimeoutOpt = 60.0,
    json: JsonOpt = False,
) -> None:
    """Start worker nodes detached; returns once each answers a ping addressed to it.

    A node already running is left alone. Options not given are the ones the node last ran with.
    Exit code 0 started (or already running), 1 a node died during start-up (its log tail is shown),
    69 broker unreachable.

    Example: carsctl worker start ai -Q ai_processing -c 2
    """
    from carsctl.lifecycle.node_specs import DEFAULT_NODE, worker_spec
    from carsctl.lifecycle.worker_nodes import start_foreground, start_workers

    cli = obj(ctx)
    names = list(dict.fromkeys(nodes or [DEFAULT_NODE]))
    specs = [worker_spec(cli.settings, name, queues=[queues] if queues else None, concurrency=concurrency,
                                   pool=pool, autoscale=autoscale, loglevel=loglevel,
                                   include=[include] if include else None) for name in names]
    if foreground:
        if len(specs) != 1:
            raise typer.BadParameter("--foreground runs exactly one node")
        start_foreground(cli.settings, specs[0])
    results = start_workers(cli.settings, specs, timeout=timeout, app_loader=_loader(cli),
                                      progress=cli.info)
    report_started(cli, results, json or cli.json)


@app.command("stop")
def stop(ctx: typer.Context, nodes: NodesArg = None, timeout: StopTimeoutOpt = 60.0,
         cold_timeout: ColdTimeoutOpt = 10.0, force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Stop worker nodes gracefully: SIGTERM to each node's main process, never its process group.

    Running tasks finish during --timeout; then a cold shutdown (SIGQUIT) re-queues them; SIGKILL only
    with --force. Stale pidfiles (dead or reused pid) are removed, never signalled.
    Exit code 0 stopped, 10 cold shutdown, 11 killed, 1 still running.

    Example: carsctl worker stop ai --timeout 120
    """
    from carsctl.lifecycle.node_control import stop_nodes
    from carsctl.lifecycle.worker_nodes import worker_targets

    cli = obj(ctx)
    states = worker_targets(cli.settings, nodes or [])
    if not states:
        cli.info("no worker nodes started by carsctl are running")
        return
    results = stop_nodes(cli.settings, states, timeout=timeout, cold_timeout=cold_timeout,
                                   force=force, app_loader=_loader(cli), progress=cli.info)
    raise typer.Exit(report_stopped(cli, results, json or cli.json))


@app.command("restart")
def restart(ctx: typer.Context, nodes: NodesArg = None, timeout: StopTimeoutOpt = 60.0,
            cold_timeout: ColdTimeoutOpt = 10.0, force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Stop nodes and start them again with the options they were started with (no flags to repeat).

    Exit code 0 restarted, 1 a node could not be stopped (no --force) or failed to start.

    Example: carsctl worker restart ai
    """
    from carsctl.lifecycle.node_results import StopOutcome
    from carsctl.lifecycle.worker_nodes import restart_workers

    cli = obj(ctx)
    result = restart_workers(cli.settings, nodes or [], timeout=timeout, cold_timeout=cold_timeout,
                                       force=force, app_loader=_loader(cli), progress=cli.info)
    if json or cli.json:
        cli.emit_json(result)
    report_stopped(cli, result.stopped, json=False)
    report_started(cli, result.started, json=False)  # exit 1 if a node failed to start
    if any(r.outcome is StopOutcome.STILL_RUNNING for r in result.stopped):
        raise typer.Exit(1)


@app.command("status")
def status(ctx: typer.Context, nodes: NodesArg = None,
           timeout: Annotated[float, typer.Option("--timeout", min=0.05, help="Seconds to wait for a ping reply "
                                                  "(answering nodes return at once).")] = 1.0,
           json: JsonOpt = False) -> None:
    """Each node: process alive? answers a ping addressed to it? with pid, queues, pool, uptime.

    Exit code 0 running, 3 not running, 4 running but not responding, 5 crashed or stale pidfile, 69 broker
    unreachable (with several nodes: the highest), so it can serve as a liveness probe.

    Example: carsctl worker status ai --json
    """
    from carsctl.lifecycle.worker_nodes import worker_status

    cli = obj(ctx)
    rows = worker_status(cli.settings, nodes or [], timeout=timeout, app_loader=_loader(cli))
    raise typer.Exit(report_status(cli, rows, json or cli.json))
