"""What the lifecycle commands (worker, beat, flower, up/down) print: start, stop and status results.

One line per node on stderr, the JSON document on stdout with --json; each returns (or raises) the
command's exit code, so every lifecycle command reports the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from carsctl.context import CliContext

if TYPE_CHECKING:
    from carsctl.lifecycle.node_results import NodeStatusRow, StartResult, StopResult


def report_started(cli: CliContext, results: Sequence[StartResult], json: bool, refused_ok: bool = False) -> None:
    """Print start results (one line per node on stderr; with `json` also the JSON on stdout); exit 1
    if any failed (or was refused, unless `refused_ok`: `up` is content when beat runs elsewhere)."""
    from carsctl.lifecycle.node_results import StartState

    if json:
        cli.emit_json(list(results))
    for result in results:
        name = result.hostname or result.name
        if result.state is StartState.STARTED:
            cli.info(f"{name} started: pid {result.pid}, ready in {result.seconds:.2f}s, log {result.logfile}")
        elif result.state is StartState.ALREADY_RUNNING:
            cli.info(f"{name} is already running (pid {result.pid}); nothing changed")
        elif result.state is StartState.REFUSED:
            cli.info(f"{name} not started: {result.error}")
        else:
            cli.info(f"{name} failed to start: {result.error}; last lines of {result.logfile}:")
            for line in result.log_tail or ():
                cli.err.print(f"  {line}", markup=False, highlight=False)
    if any(r.state is StartState.FAILED or (r.state is StartState.REFUSED and not refused_ok) for r in results):
        raise typer.Exit(1)


def report_stopped(cli: CliContext, results: Sequence[StopResult], json: bool) -> int:
    """Print stop results (lines on stderr; with `json` the JSON on stdout); return the exit code (the
    highest of the nodes')."""
    from carsctl.lifecycle.node_results import StopOutcome
    from carsctl.lifecycle.node_specs import exit_code_of

    if json:
        cli.emit_json(list(results))
    words = {StopOutcome.WARM: "stopped", StopOutcome.COLD: "stopped by a cold shutdown (running tasks re-queued)",
             StopOutcome.KILLED: "killed (SIGKILL)",
             StopOutcome.STILL_RUNNING: "STILL RUNNING after the cold shutdown; rerun with --force to SIGKILL it",
             StopOutcome.NOT_RUNNING: "was not running",
             StopOutcome.STALE: "had a stale pidfile (removed, nothing signalled)"}
    for r in results:
        extra = f" in {r.seconds:.2f}s" if r.seconds is not None and r.outcome is not StopOutcome.STILL_RUNNING else ""
        note = f": {r.note}" if r.note and r.outcome is StopOutcome.STALE else ""
        cli.info(f"{r.hostname or r.name} {words[r.outcome]}{extra}{note}")
    return exit_code_of([r.exit_code for r in results])


def report_status(cli: CliContext, rows: Sequence[NodeStatusRow], json: bool, title: str = "Worker nodes") -> int:
    """Print a status table (or, with `json`, JSON); return the exit code (3 when there is nothing)."""
    from carsctl.lifecycle.node_specs import exit_code_of
    from carsctl.render import duration, safe, table

    if json:
        cli.emit_json(list(rows))
    elif rows:
        cli.out.print(table(title, ("node", "status", "pid", "queues", "pool", "up", "note"), (
            (r.hostname, r.status, r.pid or "", ", ".join(r.queues),
             f"{r.pool or ''}{'/' + str(r.concurrency) if r.concurrency else ''}",
             duration(r.uptime_seconds), r.note)
            for r in rows)))
    if not rows:
        cli.info("no worker nodes started by carsctl (start one with `carsctl worker start`)")
        return 3
    for row in rows:
        if row.last_errors and not json:
            cli.info(safe(f"{row.hostname}: last errors in {row.logfile}:"))
            for line in row.last_errors:
                cli.err.print(f"  {line}", markup=False, highlight=False)
    return exit_code_of([r.exit_code for r in rows])
