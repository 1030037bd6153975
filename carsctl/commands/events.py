"""`carsctl events`: a live view over Celery's event stream (or, with --json, the stream as NDJSON)."""

from __future__ import annotations

from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt
from carsctl.render import safe

DurationOpt = Annotated[float | None, typer.Option(
    "--duration", min=0.0, metavar="SECONDS", help="Stop after this many seconds. [default: until Ctrl-C]",
    show_default=False)]
CountOpt = Annotated[int | None, typer.Option(
    "--count", min=1, metavar="N", help="Stop after N task events. [default: until Ctrl-C]", show_default=False)]
WindowOpt = Annotated[float, typer.Option("--window", min=1.0, metavar="SECONDS",
                                          help="Seconds of events the rates and percentiles cover.")]


def events(ctx: typer.Context, json: JsonOpt = False, duration: DurationOpt = None, count: CountOpt = None,
           window: WindowOpt = 60.0) -> None:
    """Watch the workers live: per task and per node, events and runtimes over the last minute, queue
    depths, the last failures. Ctrl-C leaves. With --json, one JSON object per task or worker event
    (heartbeats left out) on stdout, as it arrives.

    \b
    Example: carsctl events --json --count 10 | jq .type
    """
    from carsctl.cluster import event_stream as stream
    from carsctl.render import dump_json_line, live_screen

    cli = obj(ctx)
    stats = stream.LiveStats(window_s=window)
    as_json = json or cli.json
    try:  # Ctrl-C leaves with exit 0 whenever it comes: a flag the watch checks at each tick
        with stream.ctrl_c_as_a_flag() as pressed:
            if as_json:
                def emit(raw: dict) -> None:
                    if raw.get("type") != "worker-heartbeat":  # every few seconds per worker: noise in a stream
                        print(dump_json_line(stats.event(raw)), flush=True)
                summary = stream.watch(cli.celery_app, emit, lambda: None, duration=duration, count=count,
                                       interrupted=pressed)
            else:
                from rich.live import Live

                queues = stream.QueueDepths(cli.celery_app)
                live = Live(live_screen(stats.snapshot()), console=cli.out, auto_refresh=False)

                def redraw() -> None:
                    live.update(live_screen(stats.snapshot(queues())), refresh=True)
                try:  # not `with Live(...)`: a Ctrl-C during its first draw would skip its exit (cursor hidden)
                    live.start(refresh=True)
                    summary = stream.watch(cli.celery_app, lambda raw: stats.add(stats.event(raw)), redraw,
                                           duration=duration, count=count, interrupted=pressed)
                    redraw()  # the events that arrived after the last redraw
                finally:
                    live.stop()  # shows the cursor again
    except KeyboardInterrupt:
        cli.info(safe(f"{stats.events} task events (stopped: interrupted)"))
        return
    cli.info(safe(f"{summary.events} events in {summary.elapsed_s:g}s (stopped: {summary.stopped_because})"))
