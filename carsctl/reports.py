"""What the lifecycle commands (worker, beat, flower, up/down) print: start, stop and status results.

One line per node on stderr, the JSON document on stdout with --json; each returns (or raises) the
command's exit code, so every lifecycle command reports the same way.
"""

from __future__ import annotations

from typing import Any

import typer

from carsctl.context import CliContext


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
    from carsctl.lifecycle.node_specs import exit_code_of

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
    from carsctl.lifecycle.node_specs import exit_code_of
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
