"""`carsctl systemd`: print systemd unit files that run the worker nodes and beat in production."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import PoolOpt


def systemd(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user", help="Units for the per-user manager (systemctl --user).")] = False,
    node: Annotated[list[str] | None, typer.Option(
        "--node", "-n", metavar="NODE", show_default=False,
        help="A worker node as NAME[:QUEUES[:CONCURRENCY]] (repeat for several), e.g. ai:ai_processing:2. "
             "[default: the nodes running now, else one node 'worker' on all five queues]")] = None,
    pool: PoolOpt = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="Write the unit files into this directory instead of printing them.",
        file_okay=False, show_default=False)] = None,
    user_name: Annotated[str | None, typer.Option(
        "--user-name", metavar="USER", show_default=False,
        help="System units run as this user (User=). [default: the user running carsctl]")] = None,
    group: Annotated[str | None, typer.Option(
        "--group", metavar="GROUP", show_default=False, help="System units run with this group (Group=).")] = None,
) -> None:
    """Print unit files: one per worker node, beat, the embedded broker (no REDIS_URL) and cars-bot.target.

    The processes run in the foreground under systemd, stopped with KillMode=mixed (SIGTERM to the main
    process, so running tasks finish) and a TimeoutStopSec longer than the task time limit. Nothing is
    installed unless --output-dir is given. The worker nodes are --node, else the nodes running now,
    else one node 'worker' on all five queues (stopped nodes are left out). System units run as
    --user-name (default: you), never as root unless asked; the embedded Redis runs in the foreground
    and is restarted when it fails. Secrets stay in .env (EnvironmentFile=), never in the units.

    Example: carsctl systemd --user --output-dir ~/.config/systemd/user
    """
    from carsctl.lifecycle import systemd_units

    cli = obj(ctx)
    account = systemd_units.service_account(user_units=user, user_name=user_name, group=group)
    chosen = systemd_units.unit_nodes(cli.settings, node or [], pool=pool)
    units = systemd_units.systemd_units(cli.settings, chosen.nodes, user=user, account=account)
    notes = systemd_units.notes(cli.settings, chosen, account)
    if output_dir is None:
        print(notes)
        for name, text in units.items():
            print(f"# ===== {name} =====\n{text}")
        return
    output_dir.expanduser().mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (output_dir.expanduser() / name).write_text(text)
    cli.info(notes.rstrip())
    cli.info(systemd_units.install_hint(output_dir, list(units), user=user))
