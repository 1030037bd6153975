"""systemd unit files for production: each worker node, beat, the monitor (when Telegram is configured)
and the embedded broker (when no REDIS_URL is set), grouped by `cars-bot.target`. Plain text
generation; nothing is installed here.

The worker nodes are the configured set (`unit_nodes`): the `--node` specs given, else the nodes carsctl
runs now, else the default node. Stopped nodes whose options carsctl merely remembers are left out, so
enabling the target starts what runs today, not every node ever tried. System units run as a named
user (`User=`, the invoking user unless `--user-name`), never as root by omission.

The embedded Redis runs in the foreground (`--daemonize no`, `Type=simple`) with `Restart=on-failure`:
systemd restarts it when it crashes, which a forking `carsctl broker start` oneshot could not.

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
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from carsctl.errors import UsageError
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


@dataclass(frozen=True, slots=True)
class Account:
    """Who system units run as (`User=`/`Group=`); both None for `--user` units (the manager's user)."""

    user: str | None = None
    group: str | None = None


def service_account(*, user_units: bool, user_name: str | None = None, group: str | None = None) -> Account:
    """`--user-name`/`--group` checked: existing names, and only for system units (UsageError otherwise).

    System units default to the invoking user: without `User=` systemd runs a system service as root.
    """
    import grp
    import pwd

    if user_units:
        if user_name or group:
            raise UsageError("--user-name and --group are for system units",
                             hint="a user manager (--user) runs its units as its own user")
        return Account()
    name = user_name or getpass.getuser()
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"no user {name!r} on this machine", hint="create it first, or pass --user-name") from None
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise UsageError(f"no group {group!r} on this machine", hint="create it first") from None
    return Account(user=name, group=group)


class NodeSource(StrEnum):
    GIVEN = "given with --node"
    RUNNING = "running now"
    DEFAULT = "the default node: none runs now"


@dataclass(frozen=True, slots=True)
class UnitNodes:
    """The worker nodes to write units for, and where that set came from."""

    nodes: tuple[NodeState, ...]
    source: NodeSource


def unit_nodes(settings: Settings, node_specs: Sequence[str], *, pool: str | None = None) -> UnitNodes:
    """The configured set of worker nodes: the `--node` specs; else the nodes carsctl runs now (their state
    files: started and not stopped); else one default node on all five queues. Remembered stopped nodes
    (every node ever started, test nodes included) are not part of it."""
    from carsctl.lifecycle.node_specs import DEFAULT_NODE, stack_layout
    from carsctl.process.nodes import list_nodes

    running = [state.name for state in list_nodes(settings)]
    specs, source = ((node_specs, NodeSource.GIVEN) if node_specs
                     else (running, NodeSource.RUNNING) if running else ([DEFAULT_NODE], NodeSource.DEFAULT))
    return UnitNodes(tuple(stack_layout(settings, specs, pool=pool)), source)


def _account_lines(account: Account) -> list[str]:
    return [*([f"User={account.user}"] if account.user else []), *([f"Group={account.group}"] if account.group else [])]


def _environment(settings: Settings) -> list[str]:
    cwd = Path.cwd()
    return [f"WorkingDirectory={cwd}", f"EnvironmentFile=-{cwd / '.env'}",
            f"Environment=CARSCTL_HOME={settings.home} LOG_DIR={settings.log_dir}",
            "# Logs, the SQLite database and the outbox hold task arguments and post texts: owner only.",
            "UMask=0077"]


def _service(description: str, exec_start: str, settings: Settings, *, account: Account, user: bool,
             after: list[str], stop_seconds: int, extra: Sequence[str] = ()) -> str:
    # A user manager has no network-online.target (it would be an unknown dependency there).
    network = [] if user else ["network-online.target"]
    lines = [
        "[Unit]", f"Description={description}",
        *(["After=" + " ".join([*network, *after])] if network or after else []),
        *[f"Wants={unit}" for unit in network], *[f"Requires={unit}" for unit in after], f"PartOf={TARGET}", "",
        "[Service]", "Type=simple", *_account_lines(account), *_environment(settings),
        f"ExecStart={exec_start}",
        "# SIGTERM to the main process only (warm shutdown); SIGKILL to the group only after TimeoutStopSec.",
        "KillMode=mixed", "KillSignal=SIGTERM", f"TimeoutStopSec={stop_seconds}",
        *extra,
        "Restart=on-failure", "RestartSec=5s", "",
        "[Install]", f"WantedBy={TARGET}", "",
    ]
    return "\n".join(lines)


def _broker_unit(settings: Settings, account: Account) -> str:
    """redis-server in the foreground: systemd supervises it and restarts it when it fails."""
    from carsctl.process.embedded_redis import paths, redis_server_binary, server_command

    binary, _ = redis_server_binary()
    p = paths(settings)
    mkdir = shutil.which("mkdir") or "/usr/bin/mkdir"
    return "\n".join([
        "[Unit]", "Description=cars_bot embedded Redis (broker and result backend on a unix socket)",
        f"PartOf={TARGET}", "",
        "[Service]", "Type=simple", *_account_lines(account), *_environment(settings),
        f"ExecStartPre={_exec([mkdir, '-p', str(p.dir), str(p.logfile.parent)])}",
        f"ExecStart={_exec(server_command(settings, binary, daemonize=False))}",
        "# SIGTERM: Redis flushes its append-only file and exits; a crash (any other exit) is restarted.",
        "KillSignal=SIGTERM", "TimeoutStopSec=60", "Restart=on-failure", "RestartSec=2s", "",
        "[Install]", f"WantedBy={TARGET}", "",
    ])


def systemd_units(settings: Settings, nodes: Sequence[NodeState], *, user: bool = False,
                  account: Account | None = None) -> dict[str, str]:
    """Unit file name -> content for the worker `nodes`, beat, the embedded broker (if used) and the target."""
    from cars_bot.celery_app import HARD_TIME_LIMIT, SOFT_TIME_LIMIT
    from carsctl.lifecycle.node_specs import beat_command, beat_spec, worker_command

    account = account or service_account(user_units=user)
    after = [BROKER_UNIT] if settings.uses_embedded_broker else []
    units: dict[str, str] = {}
    if settings.uses_embedded_broker:
        units[BROKER_UNIT] = _broker_unit(settings, account)
    stop_seconds = HARD_TIME_LIMIT + STOP_MARGIN
    for state in nodes:
        # `-n NAME@%h` becomes `NAME@%%h`: in a unit file `%h` would be the user's home directory.
        command = [a for a in worker_command(state, detached=True) if a not in ("--pidfile", state.pidfile)]
        units[worker_unit_name(state.name)] = _service(
            f"cars_bot Celery worker {state.name} (queues: {', '.join(state.queues)})", _exec(command), settings,
            account=account, user=user, after=after, stop_seconds=stop_seconds,
            extra=[f"# {stop_seconds}s > the hard time limit ({HARD_TIME_LIMIT}s; soft {SOFT_TIME_LIMIT}s)."])
    beat = beat_spec(settings)
    beat_exec = [a for a in beat_command(beat) if a not in ("--pidfile", beat.pidfile)]
    units[BEAT_UNIT] = _service("cars_bot Celery beat (one per broker: it holds a lock in Redis)", _exec(beat_exec),
                                settings, account=account, user=user, after=after, stop_seconds=60)
    from carsctl.lifecycle.monitor_node import monitor_command, monitor_configured, monitor_spec

    if monitor_configured(settings):  # SIGTERM: it finishes the album in hand and saves its position
        units[MONITOR_UNIT] = _service(
            "cars_bot Telegram monitor (listens to the source channels)",
            _exec(monitor_command(monitor_spec(settings), detached=False)), settings, account=account, user=user,
            after=after,
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


def notes(settings: Settings, chosen: UnitNodes | None = None, account: Account | None = None) -> str:
    """Comment lines for the top of the output: the nodes chosen and why, who the units run as, what the
    units will not see, and the missing monitor."""
    from cars_bot.config import VARS
    from carsctl.lifecycle.monitor_node import monitor_configured, not_configured_line

    lines = [] if chosen is None else [
        f"# Worker nodes: {', '.join(state.name for state in chosen.nodes)} ({chosen.source}); "
        "--node NAME[:QUEUES[:CONCURRENCY]] chooses others."]
    if account is not None and account.user == "root":
        lines.append("# These units run as root: pass --user-name (and --group) to run them as a service account.")
    elif account is not None and account.user:
        lines.append(f"# They run as user {account.user}: it must own {settings.home} and {settings.log_dir}.")
    if not monitor_configured(settings):
        lines.append(f"# No unit for the Telegram monitor service: {not_configured_line()}.")
    only_here = [v.name for v in VARS if settings.sources.get(v.attr) == "environment"
                 and v.name not in ("CARSCTL_HOME", "LOG_DIR")]
    if only_here:
        lines.append(f"# Set in this shell's environment but not in {Path.cwd() / '.env'}, so the units will not "
                     f"see them: {', '.join(only_here)}. Put them in that .env file (the units read it).")
    return "\n".join(lines) + "\n"
