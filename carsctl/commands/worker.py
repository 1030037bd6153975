"""`carsctl worker`: start, stop, restart and check Celery worker nodes (replaces `make run-celery-worker`
and `make stop-celery`).

Exit codes of `worker status` (a systemd/Kubernetes probe can use them): 0 running, 3 not running,
4 running but not answering a ping, 5 stale pidfile, 69 broker unreachable; with several nodes, the
highest. Exit codes of `worker stop`/`restart`: 0 stopped gracefully (or was not running), 10 needed a
cold shutdown (running tasks re-queued), 11 needed SIGKILL (--force), 1 still running (no --force).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from carsctl.context import CliContext, obj
from carsctl.options import JsonOpt

app = typer.Typer(help="Worker nodes: start, stop, restart, status.", no_args_is_help=True)

NodesArg = Annotated[list[str] | None, typer.Argument(
    metavar="NODE...", help="Node names (a node is NAME@host in Celery). Default for start: one node 'worker'; "
         "for stop/restart/status: every node carsctl started.", show_default=False)]
PoolOpt = Annotated[Literal["prefork", "solo", "threads"] | None, typer.Option(
    "--pool", "-P", help="Execution pool. [default: prefork, or what the node last ran with]", show_default=False)]
LoglevelOpt = Annotated[Literal["debug", "info", "warning", "error", "critical"] | None, typer.Option(
    "--loglevel", "-l", help="Log level. [default: info, or what the node last ran with]", show_default=False)]
StartTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to wait until a node answers a ping; after that it is stopped.")]
StopTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.0, help="Seconds of warm shutdown (running tasks finish) before a cold shutdown.")]
ColdTimeoutOpt = Annotated[float, typer.Option(
    "--cold-timeout", min=0.0, help="Seconds after the cold shutdown (SIGQUIT) before giving up, or SIGKILL "
                                   "with --force.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="SIGKILL what survives the cold shutdown.")]


def _loader(cli: CliContext) -> Any:
    return lambda: cli.celery_app


def report_started(cli: CliContext, results: list[dict[str, Any]], json: bool, refused_ok: bool = False) -> None:
    """Print start results (one line per node on stderr; with `json` also the JSON on stdout); exit 1
    if any failed (or was refused, unless `refused_ok`: `up` is content when beat runs elsewhere)."""
    if json:
        cli.emit_json(results)
    for result in results:
        name = result.get("hostname") or result["name"]
        if result["state"] == "started":
            cli.info(f"{name} started: pid {result['pid']}, ready in {result['seconds']:.2f}s, log {result['logfile']}")
        elif result["state"] == "already-running":
            cli.info(f"{name} is already running (pid {result['pid']}); nothing changed")
        elif result["state"] == "refused":
            cli.info(f"{name} not started: {result['error']}")
        else:
            cli.info(f"{name} failed to start: {result['error']}; last lines of {result['logfile']}:")
            for line in result.get("log_tail", []):
                cli.err.print(f"  {line}", markup=False, highlight=False)
    if any(r["state"] == "failed" or (r["state"] == "refused" and not refused_ok) for r in results):
        raise typer.Exit(1)


def report_stopped(cli: CliContext, results: list[dict[str, Any]], json: bool) -> int:
    """Print stop results (lines on stderr; with `json` the JSON on stdout); return the exit code (the
    highest of the nodes')."""
    from carsctl.lifecycle import exit_code_of

    if json:
        cli.emit_json(results)
    words = {"warm": "stopped", "cold": "stopped by a cold shutdown (running tasks re-queued)",
             "killed": "killed (SIGKILL)", "still-running": "STILL RUNNING after the cold shutdown; "
             "rerun with --force to SIGKILL it", "not-running": "was not running",
             "stale": "had a stale pidfile (removed, nothing signalled)"}
    for r in results:
        extra = f" in {r['seconds']:.2f}s" if r.get("seconds") is not None and r["outcome"] != "still-running" else ""
        note = f": {r['note']}" if r.get("note") and r["outcome"] == "stale" else ""
        cli.info(f"{r.get('hostname') or r['name']} {words[r['outcome']]}{extra}{note}")
    return exit_code_of([r["exit_code"] for r in results])


def report_status(cli: CliContext, rows: list[dict[str, Any]], json: bool, title: str = "Worker nodes") -> int:
    """Print a status table (or, with `json`, JSON); return the exit code (3 when there is nothing)."""
    from carsctl.lifecycle import exit_code_of
    from carsctl.render import table

    if json:
        cli.emit_json(rows)
    elif rows:
        cli.out.print(table(title, ("node", "status", "pid", "queues", "pool", "up", "note"), (
            (r["hostname"], r["status"], r["pid"] or "", ",".join(r.get("queues") or []),
             f"{r.get('pool') or ''}{'/' + str(r['concurrency']) if r.get('concurrency') else ''}",
             f"{r['uptime_seconds']:.0f}s" if r.get("uptime_seconds") is not None else "", r["note"])
            for r in rows)))
    if not rows:
        cli.info("no worker nodes started by carsctl (start one with `carsctl worker start`)")
        return 3
    return exit_code_of([r["exit_code"] for r in rows])


@app.command("start")
def start(
    ctx: typer.Context,
    nodes: NodesArg = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, show_default=False,
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
    from carsctl import lifecycle

    cli = obj(ctx)
    names = list(dict.fromkeys(nodes or [lifecycle.DEFAULT_NODE]))
    specs = [lifecycle.worker_spec(cli.settings, name, queues=[queues] if queues else None, concurrency=concurrency,
                                   pool=pool, autoscale=autoscale, loglevel=loglevel,
                                   include=[include] if include else None) for name in names]
    if foreground:
        if len(specs) != 1:
            raise typer.BadParameter("--foreground runs exactly one node")
        lifecycle.start_foreground(cli.settings, specs[0])
    results = lifecycle.start_workers(cli.settings, specs, timeout=timeout, app_loader=_loader(cli),
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
    from carsctl import lifecycle

    cli = obj(ctx)
    states = lifecycle.worker_targets(cli.settings, nodes or [])
    if not states:
        cli.info("no worker nodes started by carsctl are running")
        return
    results = lifecycle.stop_nodes(cli.settings, states, timeout=timeout, cold_timeout=cold_timeout,
                                   force=force, app_loader=_loader(cli), progress=cli.info)
    raise typer.Exit(report_stopped(cli, results, json or cli.json))


@app.command("restart")
def restart(ctx: typer.Context, nodes: NodesArg = None, timeout: StopTimeoutOpt = 60.0,
            cold_timeout: ColdTimeoutOpt = 10.0, force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Stop nodes and start them again with the options they were started with (no flags to repeat).

    Exit code 0 restarted, 1 a node could not be stopped (no --force) or failed to start.

    Example: carsctl worker restart ai
    """
    from carsctl import lifecycle

    cli = obj(ctx)
    result = lifecycle.restart_workers(cli.settings, nodes or [], timeout=timeout, cold_timeout=cold_timeout,
                                       force=force, app_loader=_loader(cli), progress=cli.info)
    if json or cli.json:
        cli.emit_json(result)
    report_stopped(cli, result["stopped"], json=False)
    report_started(cli, result["started"], json=False)  # exit 1 if a node failed to start
    if any(r["outcome"] == "still-running" for r in result["stopped"]):
        raise typer.Exit(1)


@app.command("status")
def status(ctx: typer.Context, nodes: NodesArg = None,
           timeout: Annotated[float, typer.Option("--timeout", min=0.05, help="Seconds to wait for a ping reply "
                                                  "(answering nodes return at once).")] = 1.0,
           json: JsonOpt = False) -> None:
    """Each node: process alive? answers a ping addressed to it? with pid, queues, pool, uptime.

    Exit code 0 running, 3 not running, 4 running but not responding, 5 stale pidfile, 69 broker
    unreachable (with several nodes: the highest), so it can serve as a liveness probe.

    Example: carsctl worker status ai --json
    """
    from carsctl import lifecycle

    cli = obj(ctx)
    rows = lifecycle.worker_status(cli.settings, nodes or [], timeout=timeout, app_loader=_loader(cli))
    raise typer.Exit(report_status(cli, rows, json or cli.json))
