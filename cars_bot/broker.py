"""The broker side of priorities, and counting what sits in the queues.

Priorities in this project mean what the seed says: 0-9, **9 is the most urgent**, 10 is clamped to 9,
and a message without a priority gets 5. Celery and kombu keep that number in the message untouched
(so retries, `inspect` and Flower all show the urgency the caller asked for). Only where the Redis
transport files a message into a list is it inverted: urgency 9 goes to the base list `queue`, urgency
0 to `queue:9`. kombu's Redis transport polls `queue`, `queue:1` ... `queue:9` in that order and serves
the first non-empty list, so the most urgent message is served first and every step is distinct
(`priority_steps` 0..9 instead of kombu's default four buckets 0/3/6/9).

Nothing here imports kombu or redis at module level; `PriorityRedisTransport` is loaded by kombu
through the dotted path `cars_bot.broker:PriorityRedisTransport` when the first connection is made.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

DEFAULT_PRIORITY = 5
MAX_PRIORITY = 9
PRIORITY_STEPS = list(range(MAX_PRIORITY + 1))
PRIORITY_SEP = ":"
TRANSPORT_PATH = "cars_bot.broker:PriorityRedisTransport"
REDIS_URL_SCHEMES = ("redis", "rediss", "redis+socket", "unix", "socket")


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


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in REDIS_URL_SCHEMES


def kombu_broker_url(url: str) -> str:
    """The broker URL as handed to kombu with our transport class.

    kombu lets a `redis+socket://` prefix override the transport class, so the socket form is
    passed as `socket://`, which the Redis channel itself understands.
    """
    for prefix in ("redis+socket://", "unix://"):
        if url.startswith(prefix):
            return "socket://" + url[len(prefix):]
    return url


def redis_py_url(url: str) -> str:
    """A Celery/kombu Redis URL in the form redis-py understands (`redis+socket://` -> `unix://`)."""
    for prefix in ("redis+socket://", "socket://"):
        if url.startswith(prefix):
            return "unix://" + url[len(prefix):]
    return url


def _transport_classes() -> tuple[type, type]:
    from kombu.transport import redis as kombu_redis

    class PriorityChannel(kombu_redis.Channel):
        """A Redis channel whose sub-lists are ordered by urgency, most urgent first."""

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
            conninfo = self.connection.client
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

    return Transport, PriorityChannel


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


def queue_depths(app: Celery, queues: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Messages per queue: ready (per urgency, every sub-list counted) and unacked (held by workers).

    Read through the app's own kombu channel, so `sep`, `priority_steps` and `global_keyprefix` are
    the ones the producers used. On a non-Redis broker only the total ready count is known.
    """
    queues = list(queues or app.amqp.queues.keys())
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
        channel = conn.default_channel
        if not hasattr(channel, "_q_for_pri"):
            return {q: {"ready": channel.queue_declare(q, passive=True).message_count,
                        "by_priority": {}, "unacked": 0} for q in queues}
        client = channel.client
        pipe = client.pipeline()
        plan = []
        for queue in queues:
            for level in channel.priority_steps:
                pipe.llen(channel._q_for_pri(queue, level))
                plan.append((queue, level))
        counts = pipe.execute()
        result: dict[str, dict[str, Any]] = {q: {"ready": 0, "by_priority": {}, "unacked": 0} for q in queues}
        for (queue, level), count in zip(plan, counts, strict=True):
            if count:
                urgency = MAX_PRIORITY - level if channel.priority_steps == PRIORITY_STEPS else level
                result[queue]["by_priority"][urgency] = count
                result[queue]["ready"] += count
        for raw in client.hvals(channel.unacked_key):
            try:
                _payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key in result:
                result[routing_key]["unacked"] += 1
        return result
