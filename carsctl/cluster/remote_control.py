"""Remote control (inspect, ping, revoke) that returns as soon as every worker has answered.

Celery's own CLI broadcasts and then waits out the whole `--timeout`, because it cannot know how many
workers exist. Here every broadcast knows how many replies to expect:

- on Redis, the control message is published with `PUBLISH`, which returns how many subscribers
  received it: exactly the workers listening to the control channel, whether or not carsctl started
  them. Replies are collected until that many have arrived;
- with `destination`, no more replies than destinations are expected;
- on other brokers (no subscriber count), the live nodes carsctl started are the expected set.

Only nodes that stay silent cost the timeout, and they are reported by name (carsctl's node state
names the nodes it started; a silent worker carsctl did not start is reported as a count). Every
broadcast uses a fresh connection: repeated short broadcasts on a shared connection lose replies.

On this project's Redis transport the broadcast is spoken over a plain socket (`redis_pidbox`, the same
messages kombu writes), so `inspect` needs neither the Celery app nor kombu nor redis-py; other brokers
go through kombu (`_kombu_broadcast`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from carsctl.errors import DependencyUnavailable, UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings

POLL_S = 0.1

#: `carsctl inspect WHAT` -> (Celery control command, its arguments).
INSPECT_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "active": ("active", {"safe": True}),
    "reserved": ("reserved", {"safe": True}),
    "scheduled": ("scheduled", {"safe": True}),
    "stats": ("stats", {}),
    "registered": ("registered", {"taskinfoitems": ()}),
    "revoked": ("revoked", {}),
    "queues": ("active_queues", {}),
    "ping": ("ping", {}),
}


class StopReason(StrEnum):
    """Why a broadcast stopped collecting replies."""

    ALL_REPLIED = "all replied"          # as many replies as workers were expected: it returned early
    TIMED_OUT = "timed out"              # someone expected stayed silent, or how many to expect was unknown
    NOBODY_LISTENS = "nobody listens"    # no worker received the message: nothing was waited for
    NO_REPLY = "no reply asked"          # a fire-and-forget command


@dataclass
class Broadcast:
    """The outcome of one broadcast: replies by node, who stayed silent, why it stopped, how long it took."""

    command: str
    replies: dict[str, Any] = field(default_factory=dict)
    listeners: int | None = None      # workers that received the message (Redis), None if unknown
    expected: list[str] = field(default_factory=list)   # nodes known by name that should answer
    silent: list[str] = field(default_factory=list)     # of those, the ones that did not answer
    silent_unnamed: int = 0           # listeners that did not answer and that carsctl does not know
    not_running: list[str] = field(default_factory=list)  # nodes in carsctl's state whose process is gone
    timeout: float = 1.0
    destination: list[str] | None = None
    elapsed_ms: float = 0.0           # the whole broadcast, connecting included
    wait_ms: float = 0.0              # of that, waiting for the replies
    stopped_because: StopReason = StopReason.NO_REPLY


def pid_running(pid: int | None, create_time: float | None) -> bool | None:
    """True/False for a local pid (a recycled pid counts as gone), None when it cannot be told."""
    if not pid:
        return None
    import psutil

    try:
        process = psutil.Process(pid)
        if create_time and abs(process.create_time() - create_time) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None


def known_nodes(settings: Settings) -> tuple[list[str], list[str]]:
    """Nodes carsctl started: (Celery names expected to answer, names whose process is gone)."""
    from carsctl.process.nodes import list_nodes

    this_host = {socket.gethostname(), os.uname().nodename}
    expected, gone = [], []
    for state in list_nodes(settings):
        on_this_host = state.hostname.rsplit("@", 1)[-1] in this_host
        running = pid_running(state.pid, state.create_time) if on_this_host else None
        (gone if running is False else expected).append(state.hostname)
    return expected, gone


def _collect(conn: Any, channel: Any, mailbox: Any, ticket: str, limit: int | None,
             deadline: float) -> tuple[dict[str, Any], StopReason]:
    """Replies to `ticket` until `limit` arrived or the deadline passed (one deadline, not one per reply)."""
    from kombu import Consumer

    replies: dict[str, Any] = {}
    queue = mailbox.reply_queue

    def on_message(body: Any, message: Any) -> None:
        if message.headers.get("ticket") == ticket and isinstance(body, dict):
            replies.update(body)

    consumer = Consumer(channel, [queue], accept=mailbox.accept, no_ack=True, callbacks=[on_message])
    stop = StopReason.TIMED_OUT
    try:
        with consumer:
            while True:
                if limit is not None and len(replies) >= limit:
                    stop = StopReason.ALL_REPLIED
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    conn.drain_events(timeout=remaining)
                except TimeoutError:
                    break
    finally:
        channel.after_reply_message_received(queue.name)
    return replies, stop


def broadcast(app: Celery | None, command: str, arguments: dict[str, Any] | None = None, *,
              destination: list[str] | None = None, timeout: float = 1.0, reply: bool = True,
              settings: Settings | None = None) -> Broadcast:
    """Send one control command to the workers and collect their replies, returning early.

    Raises DependencyUnavailable when the broker cannot be reached (within the connect timeout).
    """
    expected, gone = known_nodes(settings) if settings is not None else ([], [])
    if destination:
        gone = [node for node in gone if node in destination]
        expected = list(destination)
    outcome = Broadcast(command=command, not_running=gone, timeout=timeout, destination=destination)
    began = time.monotonic()
    wire = wire_target(app, settings)
    if wire is not None:
        from carsctl.cluster import redis_pidbox

        try:
            got = redis_pidbox.broadcast(
                wire.target, command, arguments or {}, destination=destination, reply=reply, timeout=timeout,
                connect_timeout=wire.connect_timeout,
                limit_for=lambda listeners: _reply_limit(listeners, destination, expected))
        except (OSError, redis_pidbox.RespError) as error:
            raise unreachable(wire.url, error) from None
        outcome.listeners, outcome.replies, outcome.wait_ms = got.listeners, got.replies, got.wait_ms
        if reply:
            outcome.stopped_because = (StopReason.ALL_REPLIED if got.all_replied
                                       else StopReason.NOBODY_LISTENS
                                       if _reply_limit(outcome.listeners, destination, expected) == 0
                                       else StopReason.TIMED_OUT)
    else:
        if app is None:
            from cars_bot.celery_app import app
        _kombu_broadcast(app, outcome, command, arguments, destination, expected, timeout, reply)
    outcome.elapsed_ms = round((time.monotonic() - began) * 1000, 1)
    outcome.expected = sorted(set(expected) | set(outcome.replies))
    outcome.silent = sorted(node for node in expected if node not in outcome.replies)
    if reply and outcome.listeners is not None and not destination:
        outcome.silent_unnamed = max(0, outcome.listeners - len(outcome.replies) - len(outcome.silent))
    return outcome


@dataclass(frozen=True, slots=True)
class Wire:
    """A Redis broker that carsctl reads over a plain socket (`redis_pidbox`) instead of through kombu."""

    target: Any                   # redis_pidbox.Target
    url: str                      # the kombu URL, for error messages (masked when shown)
    connect_timeout: float


def wire_target(app: Celery | None, settings: Settings | None) -> Wire | None:
    """The Redis broker to speak to directly, or None: use kombu (the app is then needed).

    Only this project's Redis transport (the lists' `sep` and priority steps are its own) on a plain
    `redis://` or unix socket URL; without an app, the settings' broker URL (Celery is not imported).
    """
    from cars_bot.broker import TRANSPORT_PATH
    from cars_bot.broker_urls import is_redis_url, kombu_broker_url
    from carsctl.cluster.redis_pidbox import connect_target

    if app is not None:
        url = str(app.conf.broker_url or "")
        target = connect_target(url) if app.conf.broker_transport == TRANSPORT_PATH else None
        timeout = float(app.conf.broker_connection_timeout or 4.0)
    elif settings is not None and is_redis_url(settings.broker_url):
        url = kombu_broker_url(settings.broker_url)
        target, timeout = connect_target(url), settings.broker_connect_timeout
    else:
        return None
    return Wire(target=target, url=url, connect_timeout=timeout) if target is not None else None


def _kombu_broadcast(app: Celery, outcome: Broadcast, command: str, arguments: dict[str, Any] | None,
                     destination: list[str] | None, expected: list[str], timeout: float, reply: bool) -> None:
    """The same broadcast through kombu (brokers `redis_pidbox` does not speak)."""
    from kombu.utils.uuid import uuid

    from cars_bot.broker import publish_control

    with app.connection_for_write() as conn:
        try:
            _short_brpop(conn, timeout)
            ensure_broker(app, conn)
            channel = conn.default_channel
            mailbox = app.control.mailbox(conn)
            ticket = uuid() if reply else None
            outcome.listeners = publish_control(mailbox, channel, command, arguments or {}, destination=destination,
                                                reply_ticket=ticket, timeout=timeout)
        except DependencyUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
            raise broker_error(app, error) from None
        if ticket:
            limit = _reply_limit(outcome.listeners, destination, expected)
            waiting = time.monotonic()
            if limit == 0:
                outcome.stopped_because = StopReason.NOBODY_LISTENS
            else:
                outcome.replies, outcome.stopped_because = _collect(conn, channel, mailbox, ticket, limit,
                                                                    waiting + timeout)
            outcome.wait_ms = round((time.monotonic() - waiting) * 1000, 1)


def _short_brpop(conn: Any, timeout: float) -> None:
    """Poll the reply list with short blocking reads.

    kombu's Redis transport blocks in BRPOP for 1 s, and closing the connection waits for a pending
    BRPOP: a broadcast with a short --timeout would last a whole second. (`polling_interval` would
    shorten it too, but also adds a sleep after every empty poll.)
    """
    transport = conn.transport
    if hasattr(transport, "brpop_timeout"):
        transport.brpop_timeout = min(timeout, POLL_S)


def _reply_limit(listeners: int | None, destination: list[str] | None, expected: list[str]) -> int | None:
    """How many replies to wait for: None means until the timeout."""
    if destination:
        return len(destination) if listeners is None else min(len(destination), listeners)
    if listeners is not None:
        return listeners
    return len(expected) or None


def ensure_broker(app: Celery, conn: Any) -> None:
    """Connect now, retrying once at once: a broker that is down fails in milliseconds, not after
    kombu's default 2 s back-off (a connect timeout still bounds an unresponsive one)."""
    conn.ensure_connection(max_retries=1, interval_start=0, timeout=app.conf.broker_connection_timeout)


@contextmanager
def connected(app: Celery, *, write: bool = False) -> Iterator[Any]:
    """A fresh broker connection, connected now; connection errors become the one-line exit-69 error."""
    with (app.connection_for_write() if write else app.connection_for_read()) as conn:
        try:
            ensure_broker(app, conn)
        except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
            raise broker_error(app, error) from None
        try:
            yield conn
        except (*conn.connection_errors, *conn.channel_errors) as error:
            raise broker_error(app, error) from None


def broker_error(app: Celery, error: BaseException) -> DependencyUnavailable:
    """A kombu/redis connection error as the one-line, exit-69 error (password masked)."""
    return unreachable(app.conf.broker_url, error)


def unreachable(url: str, error: BaseException) -> DependencyUnavailable:
    """A broker error as the one-line, exit-69 error (password masked)."""
    from cars_bot.secret_masking import mask_url

    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DependencyUnavailable(f"broker unreachable at {mask_url(url)}: {reason[:200]}",
                                 hint="check that Redis runs (`carsctl broker status`) and REDIS_URL")


def inspect(app: Celery | None, what: str, *, destination: list[str] | None = None, timeout: float = 1.0,
            settings: Settings | None = None) -> Broadcast:
    """`inspect WHAT` as one early-returning broadcast; see INSPECT_COMMANDS for WHAT."""
    if what not in INSPECT_COMMANDS:
        raise UsageError(f"unknown inspect command {what!r}", hint=f"one of: {', '.join(INSPECT_COMMANDS)}")
    from carsctl.process.nodes import node_hostname

    command, arguments = INSPECT_COMMANDS[what]
    nodes = [node_hostname(node) for node in destination] if destination else None  # `-d ai` = ai@this-host
    if what == "scheduled":
        return scheduled(app, destination=nodes, timeout=timeout, settings=settings)
    return broadcast(app, command, arguments, destination=nodes, timeout=timeout, settings=settings)


def scheduled(app: Celery | None, *, destination: list[str] | None = None, timeout: float = 1.0,
              settings: Settings | None = None) -> Broadcast:
    """The ETA tasks the workers hold, without the revoked ones.

    A worker keeps a revoked ETA task in its timer until it is due (and then drops it), and `scheduled`
    still lists it; carsctl asks the same nodes for their revoked ids and leaves those out, so
    `inspect scheduled` and `queues` agree with a revoke or a `purge --include-unacked`.
    """
    outcome = broadcast(app, "scheduled", {"safe": True}, destination=destination, timeout=timeout,
                        settings=settings)
    if not any(outcome.replies.values()):
        return outcome
    revoked = broadcast(app, "revoked", {}, destination=sorted(outcome.replies), timeout=timeout,
                        settings=settings).replies
    for node, items in outcome.replies.items():
        dropped = set(revoked.get(node) or [])
        if dropped and isinstance(items, list):
            outcome.replies[node] = [item for item in items
                                     if ((item.get("request") or {}) if isinstance(item, dict) else {}).get("id")
                                     not in dropped]
    return outcome


def require_replies(outcome: Broadcast, *, app: Celery | None = None, settings: Settings | None = None) -> None:
    """Raise DependencyUnavailable (exit 69) when no worker answered.

    When the addressed nodes were silent and `app` or `settings` is given, the nodes that do answer are named (one
    more early-returning ping), so a mistyped `-d` is told what to type instead.
    """
    if outcome.replies:
        return
    hint = "start one with `carsctl worker start`"
    if outcome.listeners == 0:
        message = "no worker is running (none listens for remote control)"
    elif outcome.destination:
        message = f"{', '.join(outcome.destination)} did not reply within {outcome.timeout:g}s"
        if app is not None or settings is not None:
            others = sorted(broadcast(app, "ping", {}, timeout=outcome.timeout, settings=settings).replies)
            hint = (f"nodes that answer: {', '.join(others)}" if others
                    else "no other node answers either; start one with `carsctl worker start`")
    else:
        message = f"no worker replied within {outcome.timeout:g}s"
    if outcome.not_running:
        message += f"; not running: {', '.join(outcome.not_running)}"
    raise DependencyUnavailable(message, hint=hint)


# --- turning replies into rows ---------------------------------------------------------------------

def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task a worker holds (active, reserved or scheduled), as data: no Python reprs."""

    worker: str
    name: str
    alias: str                    # the short name `carsctl task run` takes ("" when unknown)
    id: str | None
    args: Any                     # a list, or a repr string from older workers
    kwargs: Any
    started_at: str | None        # ISO 8601, active tasks only
    runtime_s: float | None
    eta: str | None               # scheduled tasks only
    priority: int | None
    queue: str | None
    worker_pid: int | None
    acknowledged: bool | None


def task_rows(outcome: Broadcast, now: float | None = None) -> list[TaskRow]:
    """active / reserved / scheduled replies as one flat list of tasks, in node order."""
    from cars_bot.task_names import task_alias

    now = time.time() if now is None else now
    rows = []
    for node, items in sorted(outcome.replies.items()):
        for item in items or []:
            request = item.get("request", item) if isinstance(item, dict) else {}
            started = request.get("time_start")
            delivery = request.get("delivery_info") or {}
            name = request.get("name") or request.get("type") or ""
            rows.append(TaskRow(
                worker=node,
                name=name,
                alias=task_alias(name) if name else "",
                id=request.get("id"),
                args=request.get("args"),
                kwargs=request.get("kwargs"),
                started_at=_iso(started),
                runtime_s=round(now - started, 1) if started else None,
                eta=item.get("eta") if "request" in item else request.get("eta"),
                # the message's own priority: a `scheduled` item's "priority" is the worker's timer's (6)
                priority=delivery.get("priority"),
                queue=delivery.get("routing_key"),
                worker_pid=request.get("worker_pid"),
                acknowledged=request.get("acknowledged"),
            ))
    return rows


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """`inspect stats`: one worker's process, pool and counters."""

    worker: str
    pid: int | None
    uptime_s: float | None
    concurrency: int | None
    pool: str | None              # the pool class path, e.g. "celery.concurrency.prefork:TaskPool"
    processed: int
    by_task: dict[str, int]
    prefetch_count: int | None
    max_rss_kb: int | None


@dataclass(frozen=True, slots=True)
class WorkerQueues:
    """`inspect queues`: the queues one worker consumes from."""

    worker: str
    queues: list[str]


@dataclass(frozen=True, slots=True)
class WorkerItems:
    """`inspect registered` / `inspect revoked`: one worker's task names or revoked task ids."""

    worker: str
    items: list[str]


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """Any other reply (`ping`), as the worker sent it."""

    worker: str
    reply: Any


@dataclass(frozen=True, slots=True)
class SilentWorker:
    """A worker that was expected to answer and did not."""

    worker: str
    silent: bool = True


NodeReplyRow = WorkerStats | WorkerQueues | WorkerItems | WorkerReply | SilentWorker


def node_rows(outcome: Broadcast) -> list[NodeReplyRow]:
    """stats / ping / registered / revoked / queues replies as one row per node, silent nodes last."""
    rows: list[NodeReplyRow] = []
    for node, data in sorted(outcome.replies.items()):
        if outcome.command == "stats":
            pool = data.get("pool") or {}
            rows.append(WorkerStats(worker=node, pid=data.get("pid"), uptime_s=data.get("uptime"),
                                    concurrency=pool.get("max-concurrency"), pool=pool.get("implementation"),
                                    processed=sum((data.get("total") or {}).values()),
                                    by_task=data.get("total") or {}, prefetch_count=data.get("prefetch_count"),
                                    max_rss_kb=(data.get("rusage") or {}).get("maxrss")))
        elif outcome.command == "active_queues":
            rows.append(WorkerQueues(worker=node, queues=sorted(q.get("name") for q in data or [])))
        elif outcome.command in ("registered", "revoked"):
            rows.append(WorkerItems(worker=node, items=sorted(data or [])))
        else:
            rows.append(WorkerReply(worker=node, reply=data))
    rows += [SilentWorker(worker=node) for node in outcome.silent]
    return rows


TASK_COMMANDS = ("active", "reserved", "scheduled")


@dataclass(frozen=True, slots=True)
class InspectReport:
    """The JSON document of an inspect command: who answered, who did not, why it stopped, and the rows."""

    command: str
    listeners: int | None
    replied: list[str]
    silent: list[str]
    silent_unnamed: int
    not_running: list[str]
    elapsed_ms: float
    wait_ms: float
    stopped_because: StopReason
    rows: list[TaskRow] | list[NodeReplyRow]


def inspect_data(outcome: Broadcast) -> InspectReport:
    """An inspect broadcast as rows (tasks, or one per node) plus who answered and who did not."""
    rows = task_rows(outcome) if outcome.command in TASK_COMMANDS else node_rows(outcome)
    return InspectReport(command=outcome.command, listeners=outcome.listeners, replied=sorted(outcome.replies),
                         silent=outcome.silent, silent_unnamed=outcome.silent_unnamed,
                         not_running=outcome.not_running, elapsed_ms=outcome.elapsed_ms, wait_ms=outcome.wait_ms,
                         stopped_because=outcome.stopped_because, rows=rows)
