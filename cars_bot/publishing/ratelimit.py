"""A cluster-wide publishing rate limit in Redis.

Celery's `rate_limit` counts per worker process, so four processes post four times as fast. Telegram
allows about 20 messages a minute to one channel, whoever sends them; this limiter is one sliding
window (a sorted set of send times) shared by every worker through Redis, checked and updated
atomically by a Lua script. The clock is Redis's own (`TIME`), so hosts with skewed clocks agree.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

WINDOW_SECONDS = 60.0
KEY_PREFIX = "cars_bot:ratelimit:"

# KEYS[1]: the window (sorted set: member = unique send, score = ms timestamp)
# ARGV[1]: sends allowed per window; ARGV[2]: window in ms; ARGV[3]: a unique member suffix
# Returns 0 when a slot was reserved now, else the milliseconds until the oldest send leaves the window.
_SLIDING_WINDOW = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""

_script: Any = None
_clients: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def reserve_slot(redis_client: Any, key: str, per_minute: int, *, window: float = WINDOW_SECONDS) -> float:
    """Reserve one send under `key` if fewer than `per_minute` happened in the last `window` seconds.

    Returns 0.0 when the send may happen now (the slot is taken), otherwise the seconds to wait
    (nothing is reserved then). Atomic across every process sharing the Redis server.
    """
    if per_minute <= 0:
        raise ValueError("per_minute must be positive")
    global _script
    if _script is None:
        _script = redis_client.register_script(_SLIDING_WINDOW)
    # EVALSHA on the given client (falls back to EVAL once per server after a SCRIPT FLUSH or restart)
    wait_ms = _script(keys=[key], args=[int(per_minute), int(window * 1000), uuid.uuid4().hex],
                      client=redis_client)
    return max(0.0, float(wait_ms) / 1000.0)


def publish_key(channel: str) -> str:
    """The limiter key of one target channel."""
    return f"{KEY_PREFIX}publish:{channel.strip().lower()}"


def redis_client(url: str) -> Any:
    """This process's redis-py client for a broker-style URL (`redis://`, `rediss://`, or the
    embedded Redis's `redis+socket:///path` / `unix:///path`)."""
    from cars_bot.broker_urls import redis_py_url

    url = redis_py_url(url)
    key = (url, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _clients[key] = client
        return client
