"""Broker URLs: which ones are Redis, and each in the form kombu or redis-py wants (no kombu or redis import)."""

from __future__ import annotations

REDIS_URL_SCHEMES = ("redis", "rediss", "redis+socket", "unix", "socket")


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
