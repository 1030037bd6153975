"""`carsctl status`: one answer to "is everything OK?", gathered in well under half a second.

Broker, database and failed-task count, each worker node (the ones carsctl started, from its node
state, and any other worker that answers), beat (its heartbeat in the broker), queue depths and the
monitor service. The three worker broadcasts return as soon as every listening worker has replied
(carsctl.cluster.remote_control), so a healthy cluster costs a few milliseconds of remote control.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CarsctlError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.beat import Heartbeat
    from cars_bot.config import Settings
    from carsctl.cluster.queue_ops import QueueRow, UnconsumedQueue
    from carsctl.cluster.remote_control import Wire
    from carsctl.health.connectivity import BrokerInfo
    from carsctl.process.nodes import NodeState


class WorkerState(StrEnum):
    """What `status` knows of a worker node."""

    ONLINE = "online"                 # answered remote control
    SILENT = "silent"                 # its process runs (or runs elsewhere) but it did not answer
    NOT_RUNNING = "not running"       # carsctl started it and its process is gone
    CRASHED = "crashed"               # ... and it died without a clean shutdown (see `note`, `last_errors`)
    UNKNOWN = "unknown"               # the broker is unreachable: nobody could be asked


class BeatState(StrEnum):
    """What `status` knows of beat."""

    ALIVE = "alive"
    NOT_TICKING = "not ticking"       # a heartbeat, but too old: beat hangs (celery#9622)
    NO_HEARTBEAT_YET = "running, no heartbeat yet"
    NOT_RUNNING = "not running"       # carsctl started it and its process is gone
    NOT_SEEN = "not seen"             # no heartbeat, and carsctl did not start one
    UNKNOWN = "unknown"               # the broker is unreachable


class MonitorState(StrEnum):
    """The Telegram monitor service, as far as carsctl's node state tells."""

    RUNNING = "running"
    NOT_RUNNING = "not running"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    """Is the database reachable, and how many failed tasks wait in its registry."""

    url: str                          # masked
    reachable: bool
    failed_tasks: int | None          # None when unreachable
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker node: carsctl's node state merged with its `stats` reply."""

    node: str                         # the Celery node name, or "(N unnamed)" for silent workers nobody named
    state: WorkerState
    name: str | None = None
    pid: int | None = None
    host: str | None = None
    queues: list[str] = field(default_factory=list)
    concurrency: int | None = None
    started_by_carsctl: bool = False
    active: int | None = None         # None unless online
    reserved: int | None = None
    processed: int | None = None
    uptime_s: float | None = None
    note: str | None = None                  # not running / crashed: how it ended, as far as its traces tell
    last_errors: list[str] = field(default_factory=list)  # crashed: the last error lines of its log


@dataclass(frozen=True, slots=True)
class BeatInfo:
    """Beat: its heartbeat in the broker (alive and ticking?) and whether carsctl started it."""

    state: BeatState
    started_by_carsctl: bool | None = None   # None when the broker is unreachable (not looked at)
    pid: int | None = None
    process_running: bool | None = None       # None when carsctl did not start it (or cannot tell)
    heartbeat: Heartbeat | None = None   # as beat wrote it (cars_bot.beat)
    last_tick: datetime | None = None
    tick_age_s: float | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class MonitorInfo:
    """The Telegram monitor service."""

    state: MonitorState
    started_by_carsctl: bool
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `status` shows, the problems found (one line each) and the exit code they mean."""

    checked_at: datetime
    broker: BrokerInfo
    database: DatabaseHealth
    nodes: list[WorkerRow]
    queues: list[QueueRow]
    beat: BeatInfo
    monitor: MonitorInfo
    problems: list[str]
    exit_code: int
    elapsed_ms: float
    # queue -> the nodes consuming it; None when not asked (no message waits, so none can be stranded)
    queue_consumers: dict[str, list[str]] | None = None
    unconsumed: list[UnconsumedQueue] = field(default_factory=list)     # messages waiting, nobody consumes


def gather(app: Celery | None, settings: Settings, timeout: float = 1.0) -> StatusReport:
    """Everything `status` shows; the broker-side parts are skipped when the broker is unreachable.

    Without an app (`carsctl status`), a Redis broker is read over a plain socket (`redis_pidbox`):
    Celery, kombu and redis-py are imported only for other brokers.
    """
    from cars_bot.secret_masking import mask_url
    from carsctl.cluster.remote_control import wire_target
    from carsctl.health.connectivity import BrokerInfo

    began = time.monotonic()
    checked_at = datetime.now(UTC)
    problems: list[str] = []
    wire = wire_target(app, settings) if app is None else None
    if app is None and wire is None:
        from cars_bot.celery_app import app
    try:
        broker = _check_broker(settings, wire)
    except CarsctlError as error:
        broker = BrokerInfo(url=mask_url(settings.broker_url), reachable=False,
                            embedded=settings.uses_embedded_broker, error=str(error))
        problems.append(f"broker: {error}")
    database = database_status(settings)
    if not database.reachable:
        problems.append(f"database: {database.error}")
    elif settings.openai_api_key:
        problems += openai_problems(settings)
    consumers: dict[str, list[str]] | None = None
    starved: list[UnconsumedQueue] = []
    if broker.reachable:
        nodes = worker_rows(app, settings, timeout)
        queues = _queues(app, wire)
        beat = beat_info(app, settings, wire)
        consumers, starved = _consumers(app, nodes, queues, timeout, settings)
    else:
        nodes = [_state_row(state, WorkerState.UNKNOWN) for state in _states(settings)]
        queues, beat = [], BeatInfo(state=BeatState.UNKNOWN)
    monitor = monitor_status(settings)
    problems += _node_problems(nodes, beat, monitor)
    problems += [f"queue {q.queue}: {q.ready} message(s) waiting and no worker consumes it (fix: {q.fix})"
                 for q in starved]
    unavailable = not broker.reachable or not database.reachable
    return StatusReport(
        checked_at=checked_at, broker=broker, database=database, nodes=nodes, queues=queues, beat=beat,
        monitor=monitor, problems=problems,
        exit_code=EXIT_UNAVAILABLE if unavailable else EXIT_FAILED if problems else EXIT_OK,
        elapsed_ms=round((time.monotonic() - began) * 1000, 1), queue_consumers=consumers, unconsumed=starved)


def _check_broker(settings: Settings, wire: Wire | None) -> BrokerInfo:
    """check_broker, over the plain socket when `wire` is given. A broker that refuses is asked again
    by check_broker, which words the error as always; one that does not answer is not waited for twice."""
    from carsctl.health.connectivity import check_broker

    if wire is None:
        return check_broker(settings)
    from cars_bot.secret_masking import mask_url
    from carsctl.cluster import redis_pidbox
    from carsctl.health.connectivity import BrokerInfo

    began = time.perf_counter()
    try:
        client = redis_pidbox.open_client(wire.target, wire.connect_timeout)
        try:
            info = redis_pidbox.info(client)
        finally:
            client.close()
    except TimeoutError as error:
        from carsctl.health.connectivity import _reason, _unreachable

        raise _unreachable("broker", settings.broker_url, settings, _reason(error)) from None
    except (OSError, redis_pidbox.RespError):
        return check_broker(settings)
    return BrokerInfo(url=mask_url(settings.broker_url), reachable=True, kind="redis",
                      embedded=settings.uses_embedded_broker, version=info.get("redis_version"),
                      used_memory=info.get("used_memory_human"),
                      latency_ms=round((time.perf_counter() - began) * 1000, 2))


def _consumers(app: Celery | None, nodes: list[WorkerRow], queues: list[QueueRow], timeout: float,
               settings: Settings | None = None) -> tuple[dict[str, list[str]] | None, list[UnconsumedQueue]]:
    """Who consumes each queue (asked of the nodes that answered), and the queues nobody consumes; not
    asked when no message waits (a healthy idle cluster keeps its three broadcasts)."""
    from carsctl.cluster.queue_ops import queue_consumers, unconsumed

    if not any(queue.ready for queue in queues):
        return None, []
    online = [row.node for row in nodes if row.state == WorkerState.ONLINE]
    consumers = queue_consumers(app, nodes=online, timeout=timeout, settings=settings) if online else {}
    return consumers, unconsumed(queues, consumers, any_worker=bool(online))


def openai_problems(settings: Settings) -> list[str]:
    """"OpenAI: quota exhausted since ..." and "N posts analysed by the fallback in the last hour"."""
    from cars_bot.ai.fallbacks import openai_health
    from cars_bot.db.session import session_factory

    try:
        with session_factory(settings.database_url)() as session:
            return openai_health(session).lines()
    except Exception as error:  # noqa: BLE001 - the database line already reports an unusable database
        return [f"OpenAI fallbacks: not checked ({type(error).__name__})"]


def database_status(settings: Settings) -> DatabaseHealth:
    """Reachable, and how many failed tasks wait in the registry (one COUNT query, no Alembic)."""
    from cars_bot.secret_masking import mask_url

    url = settings.database_url
    query = "SELECT count(*) FROM failed_tasks WHERE status = 'failed'"
    try:
        if url.startswith("sqlite:///"):
            # the standard library's driver: SQLAlchemy's import alone costs more than this whole check
            import sqlite3

            path = url.removeprefix("sqlite:///")
            if not Path(path).exists():
                return DatabaseHealth(url=mask_url(url), reachable=False, failed_tasks=None,
                                      error="not created yet (run `carsctl db upgrade`)")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as connection:
                failed = connection.execute(query).fetchone()[0]
        else:
            from sqlalchemy import text

            from cars_bot.db.session import get_engine

            with get_engine(url).connect() as connection:
                failed = connection.execute(text(query)).scalar_one()
    except Exception as error:  # noqa: BLE001 - any driver error means unreachable or not migrated
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        if "no such table" in reason or "does not exist" in reason:
            reason = "not migrated (run `carsctl db upgrade`)"
        return DatabaseHealth(url=mask_url(url), reachable=False, failed_tasks=None, error=reason)
    return DatabaseHealth(url=mask_url(url), reachable=True, failed_tasks=int(failed))


def _states(settings: Settings) -> list[NodeState]:
    from carsctl.process.nodes import list_nodes

    return list_nodes(settings)


def _state_row(state: NodeState, worker_state: WorkerState) -> WorkerRow:
    return WorkerRow(node=state.hostname, state=worker_state, name=state.name, pid=state.pid,
                      host=state.hostname.rsplit("@", 1)[-1], queues=state.queues, concurrency=state.concurrency,
                      started_by_carsctl=True)


def _gone_row(state: NodeState) -> WorkerRow:
    """A node carsctl started whose process is gone: crashed or not, told from its pidfile and log."""
    from carsctl.process.exit_reason import diagnose

    diagnosis = diagnose(state.logfile, bool(state.pidfile) and Path(state.pidfile).exists())
    return replace(_state_row(state, WorkerState.CRASHED if diagnosis.crashed else WorkerState.NOT_RUNNING),
                   note=diagnosis.reason, last_errors=list(diagnosis.last_errors))


def worker_rows(app: Celery, settings: Settings, timeout: float = 1.0) -> list[WorkerRow]:
    """One row per worker node: carsctl's own (even when down) and every other that answered."""
    from carsctl.cluster.remote_control import broadcast, known_nodes

    stats = broadcast(app, "stats", timeout=timeout, settings=settings)
    expected = set(stats.replies)
    active = broadcast(app, "active", {"safe": True}, destination=sorted(expected), timeout=timeout,
                       settings=settings) if expected else None
    reserved = broadcast(app, "reserved", {"safe": True}, destination=sorted(expected), timeout=timeout,
                         settings=settings) if expected else None
    _alive, gone = known_nodes(settings)
    rows = {state.hostname: _gone_row(state) if state.hostname in gone else _state_row(state, WorkerState.SILENT)
            for state in _states(settings)}
    for node, data in stats.replies.items():
        pool = data.get("pool") or {}
        known = rows.get(node) or WorkerRow(node=node, state=WorkerState.ONLINE, name=node.split("@", 1)[0],
                                             host=node.rsplit("@", 1)[-1])
        rows[node] = replace(
            known, state=WorkerState.ONLINE, pid=data.get("pid"), concurrency=pool.get("max-concurrency"),
            processed=sum((data.get("total") or {}).values()), uptime_s=data.get("uptime"),
            active=len((active.replies if active else {}).get(node) or []),
            reserved=len((reserved.replies if reserved else {}).get(node) or []))
    result = sorted(rows.values(), key=lambda r: r.node)
    if stats.silent_unnamed:
        result.append(WorkerRow(node=f"({stats.silent_unnamed} unnamed)", state=WorkerState.SILENT))
    return result


def _queues(app: Celery | None, wire: Wire | None = None) -> list[QueueRow]:
    from cars_bot.broker import QueueDepth, queue_depths
    from carsctl.cluster.queue_ops import queue_row

    if wire is None:
        return [queue_row(name, depth) for name, depth in queue_depths(app).items()]
    from cars_bot.config import QUEUES
    from carsctl.cluster import redis_pidbox

    try:
        client = redis_pidbox.open_client(wire.target, wire.connect_timeout)
        try:
            counts = redis_pidbox.queue_counts(client, list(QUEUES))
        finally:
            client.close()
    except (OSError, redis_pidbox.RespError) as error:
        from carsctl.cluster.remote_control import unreachable

        raise unreachable(wire.url, error) from None
    return [queue_row(name, QueueDepth(ready=sum(by_priority.values()), by_priority=by_priority, unacked=unacked))
            for name, (by_priority, unacked) in counts.items()]


def beat_info(app: Celery | None, settings: Settings, wire: Wire | None = None) -> BeatInfo:
    """Beat: its heartbeat in the broker (alive and ticking?) and whether carsctl started it."""
    from carsctl.cluster.remote_control import pid_running
    from carsctl.process.nodes import list_nodes

    heartbeat = _read_heartbeat(app, wire)
    states = list_nodes(settings, kind="beat")
    started = states[0] if states else None
    running = pid_running(started.pid, started.create_time) if started else None
    info = BeatInfo(state=BeatState.NOT_SEEN, started_by_carsctl=started is not None,
                    pid=started.pid if started else None, process_running=running)
    if heartbeat:
        from cars_bot.beat import heartbeat_age, stale_after

        age = heartbeat_age(heartbeat)
        alive = age is not None and age <= stale_after(heartbeat)
        return replace(info, state=BeatState.ALIVE if alive else BeatState.NOT_TICKING, heartbeat=heartbeat,
                       last_tick=parse_time(heartbeat.tick_at),
                       tick_age_s=round(age, 1) if age is not None else None,
                       pid=heartbeat.pid or info.pid, host=heartbeat.hostname)
    if running:
        return replace(info, state=BeatState.NO_HEARTBEAT_YET)
    return replace(info, state=BeatState.NOT_RUNNING if started else BeatState.NOT_SEEN)


def _read_heartbeat(app: Celery | None, wire: Wire | None = None) -> Heartbeat | None:
    """Beat's heartbeat from the broker's Redis (as cars_bot.beat wrote it), or None (no heartbeat, or
    no such module yet)."""
    try:
        from cars_bot.beat import read_heartbeat
    except ImportError:
        return None
    if wire is not None:
        from carsctl.cluster import redis_pidbox

        try:
            client = redis_pidbox.open_client(wire.target, wire.connect_timeout)
            try:
                return read_heartbeat(redis_pidbox.KeyReader(client))
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - a heartbeat that cannot be read is a heartbeat not seen
            return None
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return read_heartbeat(client) if client is not None else None
    except Exception:  # noqa: BLE001 - a heartbeat that cannot be read is a heartbeat not seen
        return None


def parse_time(value: Any) -> datetime | None:
    """A moment from a heartbeat (ISO text or a datetime) as an aware datetime (UTC when naive), or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def monitor_status(settings: Settings) -> MonitorInfo:
    """The Telegram monitor service: not configured without its credentials, else as carsctl started it."""
    from cars_bot.monitor.client import monitor_configured
    from carsctl.cluster.remote_control import pid_running
    from carsctl.process.nodes import list_nodes

    states = list_nodes(settings, kind="monitor")
    if not states:
        state = MonitorState.NOT_RUNNING if monitor_configured(settings) else MonitorState.NOT_CONFIGURED
        return MonitorInfo(state=state, started_by_carsctl=False)
    state = states[0]
    running = pid_running(state.pid, state.create_time)
    return MonitorInfo(state=MonitorState.RUNNING if running else MonitorState.NOT_RUNNING, pid=state.pid,
                       started_by_carsctl=True)


def _node_problems(nodes: list[WorkerRow], beat: BeatInfo, monitor: MonitorInfo) -> list[str]:
    problems = []
    for row in nodes:
        if row.state == WorkerState.CRASHED:
            problems.append(f"worker {row.node}: {row.note}")
        elif row.started_by_carsctl and row.state in (WorkerState.NOT_RUNNING, WorkerState.SILENT):
            problems.append(f"worker {row.node}: {row.state}")
        elif row.state == WorkerState.SILENT:
            problems.append(f"worker {row.node}: silent")
    if beat.state == BeatState.NOT_TICKING:
        problems.append(f"beat: alive but not ticking (last tick {beat.tick_age_s}s ago)")
    elif beat.started_by_carsctl and beat.state == BeatState.NOT_RUNNING:
        problems.append("beat: not running")
    if monitor.started_by_carsctl and monitor.state != MonitorState.RUNNING:
        problems.append("monitor: not running")
    return problems
