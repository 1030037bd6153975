"""Celery's remote control (the pidbox) on Redis, spoken over a plain socket: no Celery, kombu or redis-py.

`carsctl inspect` and `status` are short processes; importing `celery.app`, kombu's Redis transport and
redis-py (which imports `redis.asyncio`) costs them more than the broadcast itself. On a Redis broker
the pidbox is a handful of commands, written here exactly as kombu writes them (checked against
`redis-cli monitor` of kombu 5.5 with this project's transport options, `sep` ":" and ten priority steps):

- the reply queue `<oid>.reply.celery.pidbox` is bound to the direct exchange `reply.celery.pidbox`
  (a member `<oid>::<queue>` of `_kombu.binding.reply.celery.pidbox`, its deadline in
  `_kombu.binding_deadlines`), so the workers' replies are pushed to its lists;
- the command is a kombu message (JSON envelope, base64 JSON body) `PUBLISH`ed to the fanout topic
  `/<db>.celery.pidbox`; the count Redis returns is the number of workers listening;
- replies are popped with `BRPOP` from the queue's ten priority lists (`queue`, `queue:1` ... `queue:9`);
- afterwards the binding and the lists are removed, as kombu does for the auto-delete reply queue.

`connect_target` returns None for what this does not speak (TLS, Sentinel, other brokers): the caller
then uses kombu.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cars_bot.broker import PRIORITY_SEP as SEP  # the transport option `sep` (cars_bot.broker imports no kombu)
from cars_bot.broker import PRIORITY_STEPS

EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
LEVELS = len(PRIORITY_STEPS)
BINDING_TTL_MS = 3_600_000  # kombu's binding deadline for a reply queue
POLL_S = 0.1


class RespError(Exception):
    """An error reply from Redis."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the broker listens: a TCP address or a unix socket path, its db and credentials."""

    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None


def connect_target(url: str) -> Target | None:
    """The broker of a kombu Redis URL (`redis://`, `socket://`, `unix://`), or None if not spoken here."""
    parts = urlsplit(url)
    scheme = parts.scheme
    query = parse_qs(parts.query)
    if query.keys() - {"db"}:
        return None  # TLS or other connection options: kombu handles them
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if scheme == "redis":
        path_db = parts.path.strip("/")
        db = int(path_db) if path_db.isdigit() else int((query.get("db") or ["0"])[0])
        return Target(host=parts.hostname or "localhost", port=parts.port or 6379, path=None, db=db,
                      username=username or None, password=password)
    if scheme in ("socket", "unix", "redis+socket"):
        if not parts.path:
            return None
        return Target(host=None, port=0, path=parts.path, db=int((query.get("db") or ["0"])[0]),
                      username=username or None, password=password)
    return None


class Resp:
    """A minimal RESP2 client: one connection, commands sent and answered in order."""

    def __init__(self, target: Target, connect_timeout: float) -> None:
        if target.path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = target.path
        else:
            self.sock = socket.socket(socket.AF_INET6 if ":" in (target.host or "") else socket.AF_INET,
                                      socket.SOCK_STREAM)
            address = (target.host, target.port)
        self.connect_timeout = connect_timeout
        self.sock.settimeout(connect_timeout)
        try:
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")
        if target.password is not None:
            self.call(*(["AUTH", target.username] if target.username else ["AUTH"]), target.password)
        if target.db:
            self.call("SELECT", target.db)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, *args: Any) -> None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
        self.sock.sendall(b"".join(parts))

    def read(self) -> Any:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("the broker closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from the broker: {line[:40]!r}")

    def call(self, *args: Any) -> Any:
        self.send(*args)
        return self.read()


def _message(body: dict[str, Any], headers: dict[str, Any], exchange: str, routing_key: str) -> bytes:
    """A kombu message as the Redis transport stores it: a JSON envelope around the base64 JSON body."""
    return json.dumps({
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {"delivery_mode": 2, "delivery_info": {"exchange": exchange, "routing_key": routing_key},
                       "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }).encode()


def _reply_body(raw: bytes, ticket: str) -> dict[str, Any] | None:
    """The body of a reply to `ticket` (None for anything else)."""
    try:
        envelope = json.loads(raw)
        if (envelope.get("headers") or {}).get("ticket") != ticket:
            return None
        body = envelope["body"]
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        data = json.loads(body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class Replies:
    """What one broadcast got back."""

    listeners: int                # workers subscribed to the control channel (PUBLISH's count)
    replies: dict[str, Any]       # node -> its reply
    all_replied: bool             # as many replies as were waited for arrived
    wait_ms: float                # time spent waiting for them


def broadcast(target: Target, command: str, arguments: dict[str, Any], *, destination: list[str] | None,
              reply: bool, timeout: float, connect_timeout: float, limit_for: Any) -> Replies:
    """Publish one control command; collect replies until `limit_for(listeners)` arrived or `timeout`.

    `limit_for` maps the subscriber count to how many replies to wait for (None: until the timeout).
    Raises OSError/RespError on broker failure.
    """
    client = Resp(target, connect_timeout)
    try:
        return _broadcast(client, target, command, arguments, destination=destination, reply=reply,
                          timeout=timeout, limit_for=limit_for)
    finally:
        client.close()


def _broadcast(client: Resp, target: Target, command: str, arguments: dict[str, Any], *,
               destination: list[str] | None, reply: bool, timeout: float,
               limit_for: Any) -> Replies:
    oid = str(uuid.uuid4())
    queue = f"{oid}.{REPLY_EXCHANGE}"
    binding = f"{oid}{SEP}{SEP}{queue}"
    lists = [queue] + [f"{queue}{SEP}{level}" for level in range(1, LEVELS)]
    body: dict[str, Any] = {"method": command, "arguments": arguments, "destination": destination,
                            "pattern": None, "matcher": None}
    ticket = str(uuid.uuid4()) if reply else None
    if ticket:
        body.update(ticket=ticket, reply_to={"exchange": REPLY_EXCHANGE, "routing_key": oid})
        client.call("SADD", f"_kombu.binding.{REPLY_EXCHANGE}", binding)
        client.call("ZADD", "_kombu.binding_deadlines", "GT", int(time.time() * 1000) + BINDING_TTL_MS,
                    REPLY_EXCHANGE)
    replies: dict[str, Any] = {}
    all_replied = False
    try:
        headers = {"clock": 1, "expires": time.time() + timeout if timeout else 0}
        listeners = int(client.call("PUBLISH", f"/{target.db}.{EXCHANGE}",
                                    _message(body, headers, EXCHANGE, "")))
        if not ticket:
            return Replies(listeners, replies, False, 0.0)
        limit = limit_for(listeners)
        waiting = time.monotonic()
        if limit == 0:
            return Replies(listeners, replies, False, 0.0)
        client.sock.settimeout(POLL_S + client.connect_timeout)  # a broker that stops answering is an error
        deadline = waiting + timeout
        while limit is None or len(replies) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # BRPOP's timeout is in seconds with decimals (Redis >= 6); a short one keeps Ctrl-C responsive
            popped = client.call("BRPOP", *lists, f"{min(remaining, POLL_S):.3f}")
            if popped:
                data = _reply_body(popped[1], ticket)
                if data:
                    replies.update(data)
        all_replied = limit is not None and len(replies) >= limit
        return Replies(listeners, replies, all_replied, round((time.monotonic() - waiting) * 1000, 1))
    finally:
        if ticket:
            client.call("SREM", f"_kombu.binding.{REPLY_EXCHANGE}", binding)
            client.call("SREM", f"_kombu.binding_permanent.{REPLY_EXCHANGE}", binding)
            client.call("DEL", *lists)


# --- the other reads of `carsctl status`, on the same wire -------------------------------------------

def open_client(target: Target, connect_timeout: float) -> Resp:
    """A connected client (raises OSError/RespError); the caller closes it."""
    return Resp(target, connect_timeout)


def info(client: Resp) -> dict[str, str]:
    """`INFO` as name -> value (strings), like redis-py's `info()` for the fields carsctl shows."""
    raw = client.call("INFO")
    fields = {}
    for line in (raw or b"").decode(errors="replace").splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, value = line.split(":", 1)
            fields[name] = value
    return fields


class KeyReader:
    """The one method of a redis-py client that `cars_bot.beat.read_heartbeat` calls: `get`."""

    def __init__(self, client: Resp) -> None:
        self.client = client

    def get(self, key: str) -> bytes | None:
        return self.client.call("GET", key)


def queue_counts(client: Resp, queues: list[str]) -> dict[str, tuple[dict[int, int], int]]:
    """Per queue: ready messages by urgency (most urgent first) and unacked ones, read from kombu's
    layout with this project's transport options (as `cars_bot.broker.queue_depths` reads them)."""
    plan = [(queue, level) for queue in queues for level in range(LEVELS)]
    for queue, level in plan:
        client.send("LLEN", f"{queue}{SEP}{level}" if level else queue)
    counts = [client.read() for _ in plan]
    by_priority: dict[str, dict[int, int]] = {queue: {} for queue in queues}
    for (queue, level), count in zip(plan, counts, strict=True):
        if count:
            by_priority[queue][LEVELS - 1 - level] = count
    unacked = dict.fromkeys(queues, 0)
    for raw in client.call("HVALS", "unacked") or []:
        try:
            _payload, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key in unacked:
            unacked[routing_key] += 1
    return {queue: (dict(sorted(by_priority[queue].items(), reverse=True)), unacked[queue]) for queue in queues}
