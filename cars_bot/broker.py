"""The broker: priorities, the Redis layout of the queues, and every private kombu/Celery API we use.

The one module that knows kombu's Redis key layout (`_q_for_pri`, the `unacked` hash and its lock) and
calls private kombu or Celery names (`_get_exec_options`, `Mailbox._publish`, `Channel._put_fanout`,
crontab's `_orig_*`, the Redis QoS's `_delivered` and `restore_by_tag`): an upgrade is fixed here only.

Priorities in this project mean what the seed says: 0-9, **9 is the most urgent**, 10 is clamped to 9,
and a message without a priority gets 5. Celery and kombu keep that number in the message untouched
(so retries, `inspect` and Flower all show the urgency the caller asked for). Only where the Redis
transport files a message into a list is it inverted: urgency 9 goes to the base list `queue`, urgency
0 to `queue:9`. kombu's Redis transport polls `queue`, `queue:1` ... `queue:9` in that order and serves
the first non-empty list, so the most urgent message is served first and every step is distinct
(`priority_steps` 0..9 instead of kombu's default four buckets 0/3/6/9).

No kombu or redis import at module level: kombu loads `cars_bot.broker:PriorityRedisTransport` on first use.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

DEFAULT_PRIORITY = 5
MAX_PRIORITY = 9
PRIORITY_STEPS = list(range(MAX_PRIORITY + 1))
PRIORITY_SEP = ":"
TRANSPORT_PATH = "cars_bot.broker:PriorityRedisTransport"


def clamp_priority(priority: Any) -> int:
    """The urgency of a message: an int 0..9 (10 is the seed's top and becomes 9)."""
    try:
        value = int(priority)
    except (TypeError, ValueError):
        return DEFAULT_PRIORITY
    return max(0, min(MAX_PRIORITY, value))


def list_level(priority: Any) -> int:
    """Which Redis sub-list a message of this urgency is filed in (0 = base list, served first)."""
    return MAX_PRIORITY - clamp_priority(priority)


def register_socket_scheme() -> None:
    """Let kombu resolve a bare `socket://` URL to this project's transport.

    Celery's `report` and `inspect conf` mask the broker URL by building a `Connection` from the URL
    alone (without `broker_transport`), and kombu knows no `socket` transport: KeyError. Registering
    the scheme makes every such path resolve to the transport the app itself uses.
    """
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault("socket", TRANSPORT_PATH)


#: Delivery tags of the messages this process held (delivered, not acked) when its broker connection was
#: lost: kombu gives them back when a channel closes, which fails while the broker is down, and they
#: would then wait in the `unacked` hash for the visibility timeout (2 h). The next channel this
#: process opens gives them back at once.
_UNRESTORED: set[str] = set()


def _transport_classes() -> tuple[type, type]:
    from kombu.transport import redis as kombu_redis

    class PriorityQoS(kombu_redis.QoS):
        def restore_unacked(self, client: Any = None) -> Any:
            try:
                return super().restore_unacked(client)
            except Exception:
                _UNRESTORED.update(self._delivered)  # restore_by_tag later skips what was given back
                raise

    class PriorityChannel(kombu_redis.Channel):
        """A Redis channel whose sub-lists are ordered by urgency, most urgent first, and which gives
        back, once the broker is reachable again, the messages it could not give back when the
        connection was lost (see `_UNRESTORED`)."""

        QoS = PriorityQoS

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # pings the broker: it is reachable from here on
            if _UNRESTORED:
                self._restore_unrestored()

        def _restore_unrestored(self) -> None:
            restored = 0
            for tag in list(_UNRESTORED):
                try:
                    # Only if the entry is still in the unacked hash (not acked, not given back by
                    # anyone else meanwhile); served next, as after a visibility timeout.
                    self.qos.restore_by_tag(tag)
                except self.connection_errors:
                    return  # the broker went away again: the next channel tries again
                _UNRESTORED.discard(tag)
                restored += 1
            logging.getLogger("cars_bot.broker").warning(
                "gave back the messages still unacknowledged of %d held when the broker connection was lost",
                restored)

        def _get_message_priority(self, message: dict[str, Any], reverse: bool = False) -> int:
            try:
                urgency = message["properties"]["priority"]
            except (KeyError, TypeError):
                urgency = None
            level = list_level(urgency)
            return MAX_PRIORITY - level if reverse else level

        def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
            # Given a transport class, kombu parses `socket:///path` into a virtual host (and Celery's
            # clones fill in hostname "localhost"). A Redis virtual host is a db number, so anything
            # else is the socket path: hand it to the Redis channel in the form it understands.
            conninfo = getattr(self.connection, "client", None)
            if conninfo is None:
                # The kombu Connection is closing (after a broker restart Celery closes the old one
                # while its channels still open pools): kombu has already cleared the transport's
                # `client`. That is a lost connection, which Celery recovers from by reconnecting; an
                # AttributeError here would kill the worker instead.
                raise _connection_closed()
            socket_path = _socket_path(conninfo.virtual_host)
            if socket_path is None:
                return super()._connparams(asynchronous)
            original = conninfo.hostname
            conninfo.hostname = "socket://" + socket_path
            try:
                return super()._connparams(asynchronous)
            finally:
                conninfo.hostname = original

        def _prepare_virtual_host(self, vhost: Any) -> int:
            return 0 if _socket_path(vhost) is not None else super()._prepare_virtual_host(vhost)

    class Transport(kombu_redis.Transport):
        Channel = PriorityChannel

        @property
        def default_connection_params(self) -> dict[str, Any]:
            # no default hostname: kombu would warn "No hostname was supplied" on every socket URL connection
            return {"port": self.default_port}

    return Transport, PriorityChannel


def _connection_closed() -> Exception:
    from redis.exceptions import ConnectionError as RedisConnectionError

    return RedisConnectionError("the broker connection is closing (kombu cleared its client); reconnect")


def _socket_path(vhost: Any) -> str | None:
    """The unix socket path hidden in a parsed `socket:///path` URL's virtual host, if any."""
    text = str(vhost or "").strip("/")
    return "/" + text if text and not text.isdigit() else None


def __getattr__(name: str) -> Any:
    # kombu resolves "cars_bot.broker:PriorityRedisTransport" lazily; build the class on first use.
    if name in ("PriorityRedisTransport", "PriorityChannel"):
        transport, channel = _transport_classes()
        globals()["PriorityRedisTransport"] = transport
        globals()["PriorityChannel"] = channel
        return globals()[name]
    raise AttributeError(name)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One queue in the broker: ready messages (per urgency, most urgent first) and unacked ones."""

    ready: int
    by_priority: dict[int, int]   # urgency 0..9 -> ready messages; empty when the broker cannot tell
    unacked: int                  # delivered to a worker, not yet acknowledged (Redis only)


def queue_depths(app: Celery, queues: list[str] | None = None) -> dict[str, QueueDepth]:
    """Messages per queue: ready (per urgency, every sub-list counted) and unacked (held by workers).

    Read through the app's own kombu channel, so `sep`, `priority_steps` and `global_keyprefix` are
    the ones the producers used. On a non-Redis broker only the total ready count is known.
    """
    queues = list(queues or app.amqp.queues.keys())
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
        channel = conn.default_channel
        if not hasattr(channel, "_q_for_pri"):
            return {q: QueueDepth(ready=channel.queue_declare(q, passive=True).message_count, by_priority={},
                                  unacked=0) for q in queues}
        client = channel.client
        pipe = client.pipeline()
        plan = []
        for queue in queues:
            for level in channel.priority_steps:
                pipe.llen(channel._q_for_pri(queue, level))
                plan.append((queue, level))
        counts = pipe.execute()
        by_priority: dict[str, dict[int, int]] = {q: {} for q in queues}
        for (queue, level), count in zip(plan, counts, strict=True):
            if count:
                urgency = MAX_PRIORITY - level if channel.priority_steps == PRIORITY_STEPS else level
                by_priority[queue][urgency] = by_priority[queue].get(urgency, 0) + count
        unacked = dict.fromkeys(queues, 0)
        for raw in client.hvals(channel.unacked_key):
            try:
                _payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key in unacked:
                unacked[routing_key] += 1
        return {q: QueueDepth(ready=sum(by_priority[q].values()),
                              by_priority=dict(sorted(by_priority[q].items(), reverse=True)), unacked=unacked[q])
                for q in queues}


# --- the Redis layout: finding and removing messages ----------------------------------------------

class UnackedLockHeld(Exception):
    """A worker holds kombu's lock on the `unacked` hash (it is restoring messages); try again soon."""


def has_redis_layout(channel: Any) -> bool:
    """True for a kombu Redis channel (priority sub-lists and the `unacked` hash live in the broker)."""
    return hasattr(channel, "_q_for_pri")


def _sub_lists(channel: Any, queue: str) -> list[str]:
    return [channel._q_for_pri(queue, level) for level in channel.priority_steps]


def message_task_id(raw: Any) -> str | None:
    """The task id of one raw message as kombu's Redis transport stores it (a ready-list entry's JSON,
    or the message dict inside an `unacked` entry); None when it is not a Celery task message."""
    message = raw
    if isinstance(raw, (bytes, str)):
        try:
            message = json.loads(raw)
        except (ValueError, TypeError):
            return None
    if not isinstance(message, dict):
        return None
    headers = message.get("headers")
    task_id = headers.get("id") if isinstance(headers, dict) else None
    if task_id is None:  # Celery's message protocol 1 keeps the id only in the properties
        properties = message.get("properties")
        task_id = properties.get("correlation_id") if isinstance(properties, dict) else None
    return task_id if isinstance(task_id, str) else None


def _queued_with(channel: Any, queues: Iterable[str], task_id: str) -> Iterator[tuple[str, str, bytes]]:
    """(queue, sub-list key, raw message) of every ready message whose task id is exactly `task_id`.

    The raw bytes are only a cheap prefilter; a message counts when its parsed task id is equal, so an
    id that is a substring of another message (or of its arguments) never matches it.
    """
    if not has_redis_layout(channel) or not task_id:
        return
    needle = task_id.encode()
    for queue in queues:
        for key in _sub_lists(channel, queue):
            for raw in channel.client.lrange(key, 0, -1):
                if needle in raw and message_task_id(raw) == task_id:
                    yield queue, key, raw


def find_queued(channel: Any, queues: Iterable[str], task_id: str) -> str | None:
    """The queue whose ready messages hold the task `task_id` (any priority sub-list), or None."""
    return next((queue for queue, _key, _raw in _queued_with(channel, queues, task_id)), None)


def is_unacked(channel: Any, task_id: str) -> bool:
    """True when the task `task_id` was delivered to a worker and not yet acknowledged."""
    if not has_redis_layout(channel) or not task_id:
        return False
    needle = task_id.encode()
    return any(needle in raw and message_task_id(_unacked_entry(raw)[0]) == task_id
               for raw in channel.client.hvals(channel.unacked_key))


def remove_queued(channel: Any, queues: Iterable[str], task_id: str) -> str | None:
    """Take the one ready message of the task `task_id` out of its queue; return that queue (None if
    not found). LREM removes only an entry equal to those exact bytes, never another message."""
    for queue, key, raw in _queued_with(channel, queues, task_id):
        if channel.client.lrem(key, 1, raw):
            return queue
    return None


def remove_unacked(channel: Any, queues: set[str], wait: float = 5.0) -> tuple[dict[str, int], list[str]]:
    """Delete the `unacked` entries routed to `queues`; return counts per queue and their task ids.

    Holds the same lock kombu takes to restore unacked messages, so neither sees half the other's
    work; raises UnackedLockHeld when a worker keeps it longer than `wait` seconds.
    """
    if not has_redis_layout(channel):
        return {}, []  # only the Redis transport keeps unacked messages in the broker
    from kombu.transport.redis import Mutex, MutexHeld

    client = channel.client
    deadline = time.monotonic() + wait
    while True:
        removed: dict[str, int] = {}
        task_ids: list[str] = []
        try:
            with Mutex(client, channel.unacked_mutex_key, channel.unacked_mutex_expire):
                tags = []
                for tag, raw in client.hgetall(channel.unacked_key).items():
                    payload, routing_key = _unacked_entry(raw)
                    if routing_key in queues:
                        tags.append(tag)
                        removed[routing_key] = removed.get(routing_key, 0) + 1
                        task_id = ((payload or {}).get("headers") or {}).get("id")
                        if task_id:
                            task_ids.append(task_id)
                if tags:
                    pipe = client.pipeline()
                    pipe.hdel(channel.unacked_key, *tags)
                    pipe.zrem(channel.unacked_index_key, *tags)
                    pipe.execute()
                return removed, task_ids
        except MutexHeld:
            if time.monotonic() > deadline:
                raise UnackedLockHeld("the broker's unacked-message lock is held by a worker") from None
            time.sleep(0.05)


def _unacked_entry(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    try:
        payload, _exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return None, None
    return payload, routing_key


# --- remote control ------------------------------------------------------------------------------

@contextmanager
def _counting_fanout(channel: Any) -> Iterator[list[int]]:
    """While active, fanout publishes on this kombu Redis channel record how many subscribers got them.

    kombu's `_put_fanout` throws away the count Redis returns for `PUBLISH`; this is the same publish
    (same topics, same payload encoding) keeping the count. Other channels are left alone.
    """
    counts: list[int] = []
    if not hasattr(channel, "_get_publish_topics"):
        yield counts
        return
    from kombu.utils.json import dumps

    def put_fanout(exchange: str, message: dict[str, Any], routing_key: str, **_: Any) -> None:
        payload = dumps(message)
        with channel.conn_or_acquire() as client:
            counts.append(max(int(client.publish(topic, payload))
                              for topic in channel._get_publish_topics(exchange, routing_key)))

    channel._put_fanout = put_fanout
    try:
        yield counts
    finally:
        del channel._put_fanout


def publish_control(mailbox: Any, channel: Any, command: str, arguments: dict[str, Any], *,
                    destination: list[str] | None, reply_ticket: str | None, timeout: float) -> int | None:
    """Publish one remote-control command; return how many workers received it (None if unknown).

    On Redis the count is the one `PUBLISH` returns: exactly the workers listening to the control
    channel. Celery's public `broadcast` cannot return it, so this calls the mailbox's `_publish`.
    """
    from kombu import Producer

    with _counting_fanout(channel) as counts:
        mailbox._publish(command, arguments, destination=destination, reply_ticket=reply_ticket,
                         channel=channel, timeout=timeout, producer=Producer(channel))
    return counts[0] if counts else None


# --- Celery routing and schedules ----------------------------------------------------------------

def task_route(app: Celery, task: Any, options: dict[str, Any], args: Any = None,
               kwargs: Any = None) -> dict[str, Any]:
    """Queue, priority and the other publish options exactly as `apply_async` would resolve them.

    The task's own options (its `priority`, `queue`, limits; set ones only) come first, then the
    caller's, and the router fills in what neither set: so what carsctl reports is what is sent.
    """
    own = {key: value for key, value in task._get_exec_options().items() if value is not None}
    return app.amqp.router.route({**own, **options}, task.name, args, kwargs, task)


def is_crontab(schedule: Any) -> bool:
    """True for a crontab schedule (its next run can be computed without a last run)."""
    return hasattr(schedule, "_orig_minute")


def describe_schedule(schedule: Any) -> str:
    """'every 60s' / 'cron 0 * * * *' for a beat schedule value."""
    if isinstance(schedule, (int, float)):
        return f"every {schedule:g}s"
    run_every = getattr(schedule, "run_every", None)
    if is_crontab(schedule):
        return "cron " + " ".join(str(getattr(schedule, f"_orig_{part}")) for part in
                                  ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
    if run_every is not None:
        return f"every {run_every.total_seconds():g}s"
    return str(schedule)


# --- what the broker and the workers hold, and giving back what a dead worker held ---------------

@dataclass(frozen=True, slots=True)
class HeldMessage:
    """One task message the broker holds, ready in a queue or delivered and not yet acknowledged."""

    task_id: str
    task: str          # the task name
    first_arg: Any     # its first positional argument (a post id for the post tasks), None without one


def _task_message(payload: Any) -> HeldMessage | None:
    """The task id, name and first argument of a kombu message payload (protocol 2, JSON body)."""
    import base64

    if not isinstance(payload, dict):
        return None
    headers = payload.get("headers") or {}
    task_id, task = headers.get("id"), headers.get("task")
    if not task_id or not task:
        return None
    first = None
    try:
        body = payload.get("body")
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        first = args[0] if args else None
    except (ValueError, TypeError, IndexError, KeyError):
        pass
    return HeldMessage(task_id=str(task_id), task=str(task), first_arg=first)


def broker_messages(app: Celery, queues: Iterable[str] | None = None) -> list[HeldMessage]:
    """Every task message in the broker: ready in the queues' sub-lists, and delivered but unacked.

    Redis only (other brokers cannot be read without consuming): an empty list elsewhere.
    """
    queues = list(queues or app.amqp.queues.keys())
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
        channel = conn.default_channel
        if not has_redis_layout(channel):
            return []
        client = channel.client
        raws: list[Any] = []
        for queue in queues:
            for key in _sub_lists(channel, queue):
                raws.extend(client.lrange(key, 0, -1))
        messages = [_task_message(_loads(raw)) for raw in raws]
        messages += [_task_message(_unacked_entry(raw)[0]) for raw in client.hvals(channel.unacked_key)]
    return [m for m in messages if m is not None]


def _loads(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return None


#: What the workers are asked for: every message a worker holds is scheduled, reserved or active. In
#: the order a request moves (Celery's `reserved` leaves out the active ones), so one moving on between
#: two questions is seen by the later one; one finished meanwhile is acked and so out of the hash.
HOLDING_COMMANDS = (("scheduled", {"safe": True}), ("reserved", {"safe": True}), ("active", {"safe": True}))


def held_by_workers(app: Celery, timeout: float = 2.0) -> tuple[frozenset[str], int] | None:
    """Task ids every live worker holds (active, reserved or scheduled) and how many workers answered.

    None unless EVERY worker that received the question answered it (the count of receivers is the
    one Redis `PUBLISH` returns), so a silent worker's messages are never taken for orphans.
    """
    held: set[str] = set()
    workers = 0
    for command, arguments in HOLDING_COMMANDS:
        replies = _ask_every_worker(app, command, arguments, timeout)
        if replies is None:
            return None
        workers = len(replies)
        for entries in replies.values():
            for entry in entries or []:
                request = entry.get("request", entry) if isinstance(entry, dict) else None
                if isinstance(request, dict) and request.get("id"):
                    held.add(str(request["id"]))
    return frozenset(held), workers


def _ask_every_worker(app: Celery, command: str, arguments: dict[str, Any],
                      timeout: float) -> dict[str, Any] | None:
    """One broadcast; the replies by node once all receivers answered, None if one stayed silent."""
    from kombu import Consumer
    from kombu.utils.uuid import uuid

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
        if hasattr(conn.transport, "brpop_timeout"):
            conn.transport.brpop_timeout = min(timeout, 0.1)
        channel = conn.default_channel
        mailbox = app.control.mailbox(conn)
        ticket = uuid()
        replies: dict[str, Any] = {}

        def on_reply(body: Any, message: Any) -> None:
            if message.headers.get("ticket") == ticket and isinstance(body, dict):
                replies.update(body)

        consumer = Consumer(channel, [mailbox.reply_queue], accept=mailbox.accept, no_ack=True,
                            callbacks=[on_reply])
        with consumer:  # listen before asking, so no reply is missed
            listeners = publish_control(mailbox, channel, command, arguments, destination=None,
                                        reply_ticket=ticket, timeout=timeout)
            if listeners is None:
                return None  # how many workers exist cannot be told on this broker
            deadline = time.monotonic() + timeout
            while len(replies) < listeners and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
        channel.after_reply_message_received(mailbox.reply_queue.name)
    return replies if len(replies) >= listeners else None


@dataclass(frozen=True, slots=True)
class OrphansRestored:
    """A pass over the `unacked` hash: messages given back to their queue, and why it stopped."""

    answered: bool              # every live worker answered (nothing is restored otherwise)
    workers: int                # live workers that answered
    unacked: int                # messages in the hash before the workers were asked, still unacked after
    held: int                   # of those, held by a live worker
    restored: tuple[str, ...]   # task ids given back to their queue


def restore_orphans(app: Celery, timeout: float = 2.0) -> OrphansRestored:
    """Give back, at once, the unacked messages no live worker holds (their worker died).

    kombu would restore them only after the visibility timeout (2 h). The hash is read first, then
    the workers are asked: only messages already delivered before the question (no clock compared),
    still unacked after every worker answered, and held by none of them, are restored. Each restore
    is kombu's own WATCH transaction on the hash, so a message acknowledged meanwhile is left alone.
    """
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
        channel = conn.default_channel
        if not has_redis_layout(channel):
            return OrphansRestored(answered=True, workers=0, unacked=0, held=0, restored=())
        client = channel.client
        before = client.hkeys(channel.unacked_key)
        holding = held_by_workers(app, timeout) if before else (frozenset(), 0)
        if holding is None:
            return OrphansRestored(answered=False, workers=0, unacked=len(before), held=0, restored=())
        held, workers = holding
        restored: list[str] = []
        unacked = held_count = 0
        for tag, raw in zip(before, client.hmget(channel.unacked_key, before) if before else [], strict=True):
            if raw is None:
                continue  # acknowledged since
            unacked += 1
            message = _task_message(_unacked_entry(raw)[0])
            if message is not None and message.task_id in held:
                held_count += 1
                continue
            channel.qos.restore_by_tag(tag, client=client)
            restored.append(message.task_id if message is not None else str(tag))
    return OrphansRestored(answered=True, workers=workers, unacked=unacked, held=held_count,
                           restored=tuple(restored))


@contextmanager
def without_result_subscription() -> Iterator[None]:
    """Tasks sent inside do not subscribe to their results (the Redis result backend's pub/sub).

    A sender that never reads the results (`post import` of thousands of posts) saves a SUBSCRIBE and
    an UNSUBSCRIBE per task, and a broker lost mid-way is one error, not a RuntimeError from every
    result object's `__del__`. The workers still store the results.
    """
    from celery import _state

    previous = _state.task_join_will_block()
    _state._set_task_join_will_block(True)
    try:
        yield
    finally:
        _state._set_task_join_will_block(previous)
