"""`carsctl logs`: the last lines of a worker's, beat's or the monitor's log, and following them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from carsctl.process.logtail import LogLine

TargetArg = Annotated[str, typer.Argument(metavar="worker|beat|monitor|NODE",
                                          help="Whose log: every worker (default), beat, the monitor, or one node.")]


def logs(
    ctx: typer.Context,
    target: TargetArg = "worker",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (across rotation).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many last lines to show first.")] = 20,
    level: Annotated[str | None, typer.Option("--level", "-l", help="Only records at this level or above.")] = None,
    task_id: Annotated[str | None, typer.Option("--task-id", help="Only records mentioning this task id.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="Only lines containing TEXT (any case).")] = None,
    json: JsonOpt = False,
) -> None:
    """Show a log, like `tail -f logs/celery_worker.log`, with filters; Ctrl-C stops it cleanly.

    A record's continuation lines (a traceback) are shown with it.

    \b
    Example: carsctl logs worker -f --level WARNING
    Example: carsctl logs --task-id 1f0c...e2 -n 200
    """
    from carsctl.process import logtail

    cli = obj(ctx)
    sources = logtail.log_sources(cli.settings, target)
    for source in sources:
        if not source.path.exists():
            cli.info(safe(f"{source.path} does not exist yet" + (": waiting for it" if follow else "")))
    write = _writer(len(sources) > 1, json or cli.json)
    try:
        for line in logtail.log_lines(sources, lines=lines, follow_on=follow, level=level, task_id=task_id,
                                      grep=grep):
            write(line)
    except KeyboardInterrupt:
        return  # Ctrl-C is how following ends: exit 0, no traceback


def _writer(several: bool, as_json: bool) -> Callable[[LogLine], None]:
    """Print one line as is (prefixed by its node when several logs are shown), or as one JSON object
    per line (JSON Lines, so `--follow --json` streams)."""
    import json
    import sys

    def write(item: LogLine) -> None:
        if as_json:
            text = json.dumps({"source": item.source.label, "file": str(item.source.path), "line": item.line,
                               "level": item.level}, ensure_ascii=False)
        else:
            text = f"[{item.source.label}] {item.line}" if several else item.line
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `carsctl logs | head`: the reader is gone
            raise typer.Exit(0) from None

    return write
