"""systemd unit files for production: each worker node, beat, the monitor (when Telegram is configured)
and the embedded broker (when no REDIS_URL is set), grouped by `cars-bot.target`. Plain text
generation; nothing is installed here.

Under systemd the processes run in the foreground (`Type=simple`: systemd is the supervisor, there is
no pidfile to go stale) with the stop semantics Celery needs (celery#102, #2700):

- `KillMode=mixed`: SIGTERM goes to the main process only (a warm shutdown: running tasks finish);
  only when `TimeoutStopSec` has passed does SIGKILL go to the whole group;
- `TimeoutStopSec` longer than the hard time limit of a task (30 min, the soft one is 25 min), so a
  warm shutdown is never cut short by systemd while a task may still legitimately run.

Secrets stay out of the units: the environment comes from `.env` in the working directory
(`EnvironmentFile=`), as for carsctl itself.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from carsctl.process.nodes import NodeState

if TYPE_CHECKING:
    from cars_bot.config import Settings

TARGET = "cars-bot.target"
BROKER_UNIT = "cars-bot-broker.service"
BEAT_UNIT = "cars-bot-beat.service"
MONITOR_UNIT = "cars-bot-monitor.service"
STOP_MARGIN = 60  # seconds beyond the hard time limit


def worker_unit_name(node: str) -> str:
    """`cars-bot-worker.service` for the default node, `cars-bot-worker-<node>.service` otherwise."""
    return "cars-bot-worker.service" if node == "worker" else f"cars-bot-worker-{node}.service"


def _quote(arg: str) -> str:
    """An ExecStart argument: `%` escaped for systemd, quoted when it has spaces."""
    arg = arg.replace("%", "%%")
    return f'"{arg}"' if any(c.isspace() for c in arg) or not arg else arg


def _exec(command: Sequence[str]) -> str:
    return " ".join(_quote(a) for a in command)


def _service(description: str, exec_start: str, settings: Settings, *, user: bool, after: list[str],
             stop_seconds: int, extra: Sequence[str] = ()) -> str:
    cwd = Path.cwd()
    lines = [
        "[Unit]", f"Description={description}", "After=" + " ".join(["network-online.target", *after]),
        "Wants=network-online.target", *[f"Requires={unit}" for unit in after], f"PartOf={TARGET}", "",
        "[Service]", "Type=simple",
    ]
    if not user and os.geteuid() != 0:
        lines.append(f"User={getpass.getuser()}")
    lines += [
        f"WorkingDirectory={cwd}",
        f"EnvironmentFile=-{cwd / '.env'}",
        f"Environment=CARSCTL_HOME={settings.home} LOG_DIR={settings.log_dir}",
        "# Logs, the SQLite database and the outbox hold task arguments and post texts: owner only.",
        "UMask=0077",
        f"ExecStart={exec_start}",
        "# SIGTERM to the main process only (warm shutdown); SIGKILL to the group only after TimeoutStopSec.",
        "KillMode=mixed", "KillSignal=SIGTERM", f"TimeoutStopSec={stop_seconds}",
        *extra,
        "Restart=on-failure", "RestartSec=5s", "",
        "[Install]", f"WantedBy={TARGET}", "",
    ]
    return "\n".join(lines)


def systemd_units(settings: Settings, nodes: Sequence[NodeState], *, user: bool = False) -> dict[str, str]:
    """Unit file name -> content for the worker `nodes`, beat, the embedded broker (if used) and the target."""
    from cars_bot.celery_app import HARD_TIME_LIMIT, SOFT_TIME_LIMIT
    from carsctl.lifecycle.node_specs import beat_command, beat_spec, worker_command

    after = [BROKER_UNIT] if settings.uses_embedded_broker else []
    units: dict[str, str] = {}
    if settings.uses_embedded_broker:
        carsctl = [sys.executable, "-m", "carsctl"]
        units[BROKER_UNIT] = "\n".join([
            "[Unit]", "Description=cars_bot embedded Redis (broker and result backend on a unix socket)",
            f"PartOf={TARGET}", "", "[Service]", "Type=oneshot", "RemainAfterExit=yes",
            f"WorkingDirectory={Path.cwd()}", f"EnvironmentFile=-{Path.cwd() / '.env'}",
            f"Environment=CARSCTL_HOME={settings.home} LOG_DIR={settings.log_dir}", "UMask=0077",
            f"ExecStart={_exec([*carsctl, 'broker', 'start'])}", f"ExecStop={_exec([*carsctl, 'broker', 'stop'])}",
            "", "[Install]", f"WantedBy={TARGET}", "",
        ])
    stop_seconds = HARD_TIME_LIMIT + STOP_MARGIN
    for state in nodes:
        # `-n NAME@%h` becomes `NAME@%%h`: in a unit file `%h` would be the user's home directory.
        command = [a for a in worker_command(state, detached=True) if a not in ("--pidfile", state.pidfile)]
        units[worker_unit_name(state.name)] = _service(
            f"cars_bot Celery worker {state.name} (queues: {', '.join(state.queues)})", _exec(command), settings,
            user=user, after=after, stop_seconds=stop_seconds,
            extra=[f"# {stop_seconds}s > the hard time limit ({HARD_TIME_LIMIT}s; soft {SOFT_TIME_LIMIT}s)."])
    beat = beat_spec(settings)
    beat_exec = [a for a in beat_command(beat) if a not in ("--pidfile", beat.pidfile)]
    units[BEAT_UNIT] = _service("cars_bot Celery beat (one per broker: it holds a lock in Redis)", _exec(beat_exec),
                                settings, user=user, after=after, stop_seconds=60)
    from carsctl.lifecycle.monitor_node import monitor_command, monitor_configured, monitor_spec

    if monitor_configured(settings):  # SIGTERM: it finishes the album in hand and saves its position
        units[MONITOR_UNIT] = _service(
            "cars_bot Telegram monitor (listens to the source channels)",
            _exec(monitor_command(monitor_spec(settings), detached=False)), settings, user=user, after=after,
            stop_seconds=60, extra=["# Exit status 2: not configured; restarting would not help.",
                                    "RestartPreventExitStatus=2"])
    units[TARGET] = "\n".join([
        "[Unit]", "Description=cars_bot: broker, worker nodes and beat",
        *[f"Wants={name}" for name in units], "",
        "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}", "",
    ])
    return units


def install_hint(directory: Path, units: Sequence[str], *, user: bool) -> str:
    """What to run after writing the units into `directory`."""
    systemctl = "systemctl --user" if user else "sudo systemctl"
    target = directory.expanduser()
    return (f"installed in {target}; then: {systemctl} daemon-reload && {systemctl} enable --now {TARGET}"
            if str(target).startswith(("/etc/systemd", str(Path.home() / ".config/systemd")))
            else f"copy them to {'~/.config/systemd/user' if user else '/etc/systemd/system'}, then: "
                 f"{systemctl} daemon-reload && {systemctl} enable --now {TARGET}")


def notes(settings: Settings) -> str:
    """Comment lines for the top of the output: what the units will not see, and the missing monitor."""
    from cars_bot.config import VARS
    from carsctl.lifecycle.monitor_node import monitor_configured, not_configured_line

    lines = [] if monitor_configured(settings) else [
        f"# No unit for the Telegram monitor service: {not_configured_line()}."]
    only_here = [v.name for v in VARS if settings.sources.get(v.attr) == "environment"
                 and v.name not in ("CARSCTL_HOME", "LOG_DIR")]
    if only_here:
        lines.append(f"# Set in this shell's environment but not in {Path.cwd() / '.env'}, so the units will not "
                     f"see them: {', '.join(only_here)}. Put them in that .env file (the units read it).")
    return "\n".join(lines) + "\n"
