"""`carsctl systemd`: print systemd unit files that run the worker nodes and beat in production."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import NodeOpt, PoolOpt


def systemd(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user", help="Units for the per-user manager (systemctl --user).")] = False,
    node: NodeOpt = None,
    pool: PoolOpt = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="Write the unit files into this directory instead of printing them.",
        file_okay=False, show_default=False)] = None,
) -> None:
    """Print unit files: one per worker node, beat, the embedded broker (no REDIS_URL) and cars-bot.target.

    The processes run in the foreground under systemd, stopped with KillMode=mixed (SIGTERM to the main
    process, so running tasks finish) and a TimeoutStopSec longer than the task time limit. Nothing is
    installed unless --output-dir is given. The node layout is --node, else the nodes carsctl ran last.

    Example: carsctl systemd --user --output-dir ~/.config/systemd/user
    """
    from carsctl.lifecycle import systemd_units
    from carsctl.lifecycle.node_specs import stack_layout

    cli = obj(ctx)
    nodes = stack_layout(cli.settings, node or [], pool=pool)
    units = systemd_units.systemd_units(cli.settings, nodes, user=user)
    if output_dir is None:
        print(systemd_units.notes(cli.settings))
        for name, text in units.items():
            print(f"# ===== {name} =====\n{text}")
        return
    output_dir.expanduser().mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (output_dir.expanduser() / name).write_text(text)
    cli.info(systemd_units.notes(cli.settings).rstrip())
    cli.info(systemd_units.install_hint(output_dir, list(units), user=user))
