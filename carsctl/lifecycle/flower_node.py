"""Flower, Celery's web UI: started detached on loopback unless authentication is set, and stopped."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from carsctl.errors import OperationFailed, UsageError
from carsctl.lifecycle.node_control import clean_up, failure, node_condition, running_result, stop_nodes
from carsctl.lifecycle.node_results import StartResult, StartState, StopOutcome, StopResult
from carsctl.lifecycle.node_specs import START_TIMEOUT, now_iso
from carsctl.process import supervise
from carsctl.process.nodes import NodeState, load_node, pidfile_path, run_dir, save_node
from carsctl.process.supervise import Condition

if TYPE_CHECKING:
    from cars_bot.config import Settings


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


FLOWER_APP = "carsctl.lifecycle.flower_app"
MIN_PASSWORD = 8  # off loopback: anything shorter is guessed by the first dictionary run


def check_basic_auth(basic_auth: str | None, address: str) -> None:
    """Refuse (UsageError, exit 2) malformed credentials, and off loopback none, an empty or a short password.

    `basic_auth` is Flower's `user:password[,user2:password2...]`; the message names the user, never
    the password.
    """
    public = not is_loopback(address)
    if public and not basic_auth:
        raise UsageError(f"refusing to serve Flower on {address} without authentication",
                         hint="add --basic-auth user:password, or listen on 127.0.0.1")
    for credential in (basic_auth or "").split(",") if basic_auth is not None else ():
        user, colon, password = credential.partition(":")
        if not colon or not user.strip():
            raise UsageError("--basic-auth must be user:password (several: user:password,user2:password2)")
        if public and not password:
            raise UsageError(f"refusing to serve Flower on {address} with an empty password for user {user!r}",
                             hint="choose a password, or listen on 127.0.0.1")
        if public and (len(password) < MIN_PASSWORD or password == user):
            raise UsageError(f"refusing to serve Flower on {address}: the password of user {user!r} is too weak "
                             f"(at least {MIN_PASSWORD} characters, not the user name)",
                             hint="choose a longer password, or listen on 127.0.0.1")


def _port_open(address: str, port: int) -> bool:
    host = "127.0.0.1" if address in ("0.0.0.0", "") else "::1" if address == "::" else address
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_flower(settings: Settings, *, port: int = 5555, address: str = "127.0.0.1",
                 basic_auth: str | None = None, timeout: float = START_TIMEOUT) -> StartResult:
    """Start Flower detached (pidfile, `logs/flower.log`); loopback only unless authentication is set.

    The credentials reach Flower through FLOWER_BASIC_AUTH in its environment: never on the command
    line (`ps`) nor in the state file.
    """
    import os

    check_basic_auth(basic_auth, address)
    state = NodeState(name="flower", hostname=f"flower@{socket.gethostname()}", kind="flower",
                      logfile=str(settings.log_dir / "flower.log"), pidfile=str(pidfile_path(settings, "flower")),
                      extra={"port": port, "address": address,
                             "auth_user": basic_auth.split(":", 1)[0] if basic_auth else None})
    url = f"http://{address if ':' not in address else f'[{address}]'}:{port}/"
    existing = load_node(settings, "flower")
    if existing is not None and node_condition(existing) is Condition.ALIVE:
        port, address = existing.extra.get("port"), existing.extra.get("address")
        return running_result(existing, url=f"http://{address}:{port}/")
    if existing is not None:
        clean_up(settings, existing)
    if _port_open(address, port):
        raise OperationFailed(f"port {port} on {address} is already in use", hint="choose another with --port")
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth
    # The project's app with connections that name their Redis URL (flower_app): Flower's Broker tab.
    command = [sys.executable, "-m", "celery", "-A", FLOWER_APP, "flower", f"--port={port}", f"--address={address}"]
    from cars_bot.private_files import private_dir

    private_dir(run_dir(settings))  # and the state directory, 0700
    spawned = supervise.spawn_detached(command, Path(state.logfile), env=env)
    state.pid, state.create_time, state.started_at, state.cmdline = (spawned.pid, spawned.create_time, now_iso(),
                                                                     command)
    save_node(settings, state)
    Path(state.pidfile).write_text(f"{spawned.pid}\n")
    return _wait_flower_ready(settings, state, spawned, timeout, url)


def _wait_flower_ready(settings: Settings, state: NodeState, spawned: supervise.Spawned, timeout: float,
                       url: str) -> StartResult:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        code = spawned.process.poll()
        if code is not None:
            clean_up(settings, state)
            return failure(settings, state, spawned, f"exited with status {code} during start-up")
        if _port_open(state.extra["address"], state.extra["port"]):
            return StartResult(name="flower", state=StartState.STARTED, pid=spawned.pid, url=url,
                               logfile=state.logfile, seconds=round(time.monotonic() - began, 3))
        time.sleep(0.05)
    supervise.stop_processes([supervise.StopTarget("flower", spawned.pid)], timeout=5, cold_timeout=2, force=True)
    clean_up(settings, state)
    return failure(settings, state, spawned, f"did not listen on {url} within {timeout:g}s; stopped it")


def stop_flower(settings: Settings, *, timeout: float = 10.0, force: bool = True) -> StopResult:
    """Stop Flower (it keeps no state worth a long wait)."""
    state = load_node(settings, "flower")
    if state is None:
        return StopResult(name="flower", outcome=StopOutcome.NOT_RUNNING, note="not running")
    return stop_nodes(settings, [state], timeout=timeout, cold_timeout=2.0, force=force)[0]
