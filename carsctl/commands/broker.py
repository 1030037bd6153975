"""`carsctl broker`: the embedded Redis (start/stop/status) or, with REDIS_URL, the configured one."""

from __future__ import annotations

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="The broker: the embedded Redis, or the one REDIS_URL names.", no_args_is_help=True)


@app.command("start")
def start(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Start the embedded Redis (idempotent); waits until it answers.

    Example: carsctl broker start
    """
    from carsctl.process import embedded_redis

    cli = obj(ctx)
    result = embedded_redis.start(cli.settings)
    if json or cli.json:
        cli.emit_json(result)
    elif result.started:
        cli.info(f"embedded Redis {result.version} started (pid {result.pid}, {result.seconds}s, "
                 f"{result.binary_from}) on {result.socket}")
    else:
        cli.info(f"embedded Redis already running (pid {result.pid}) on {result.socket}")


@app.command("stop")
def stop(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Stop the embedded Redis; queued tasks are kept on disk for the next start.

    Example: carsctl broker stop
    """
    from carsctl.process import embedded_redis

    cli = obj(ctx)
    result = embedded_redis.stop(cli.settings)
    if json or cli.json:
        cli.emit_json(result)
    elif result.stopped:
        cli.info(f"embedded Redis stopped (pid {result.pid})")
    else:
        cli.info("embedded Redis was not running" +
                 (f"; removed stale {', '.join(result.removed_stale)}" if result.removed_stale else ""))


@app.command("status")
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Is the broker reachable? Version, memory, and for the embedded one its pid and socket.

    Exit code 0 reachable, 69 unreachable or not running.
    Example: carsctl broker status --json
    """
    from dataclasses import asdict

    from carsctl.health.connectivity import check_broker
    from carsctl.process import embedded_redis

    cli = obj(ctx)
    settings = cli.settings
    if settings.uses_embedded_broker:
        embedded = embedded_redis.status(settings)
        state, running = asdict(embedded), embedded.running
    else:
        state, running = {"mode": "external", **asdict(check_broker(settings)), "running": True}, True
    if json or cli.json:
        cli.emit_json(state)
    else:
        from carsctl.render import key_values

        cli.out.print(key_values("Broker", _shown(state, running)))
    if not running:
        cli.info("embedded Redis is not running: start it with `carsctl broker start`")
        raise typer.Exit(69)


def _shown(state: dict[str, object], running: bool) -> list[tuple[str, object]]:
    """The status as an operator reads it: "state running", yes/no for flags, lists joined, nothing empty."""
    rows: list[tuple[str, object]] = [("state", "running" if running else "not running")]
    for key, value in state.items():
        if key == "running" or value in (None, [], ()):
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif key == "latency_ms" and isinstance(value, float):
            key, value = "latency", f"{value:.1f} ms"
        elif isinstance(value, list | tuple):
            value = ", ".join(str(item) for item in value)
        rows.append((key.replace("_", " "), value))
    return rows
