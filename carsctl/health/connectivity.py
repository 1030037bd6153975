"""Fast reachability checks: one line and exit 69 within seconds, never Celery's minutes of retries."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carsctl.errors import DependencyUnavailable

if TYPE_CHECKING:
    from cars_bot.config import Settings


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """The broker as a reachability check saw it (`status` also reports an unreachable one with its error)."""

    url: str                          # masked
    reachable: bool
    kind: str | None = None           # "redis", or the URL scheme of another broker
    embedded: bool = False            # the Redis carsctl runs itself (no REDIS_URL)
    version: str | None = None        # Redis only
    used_memory: str | None = None    # Redis only, human-readable ("1.02M")
    latency_ms: float | None = None
    error: str | None = None          # why it is unreachable


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """The database answered: its migration revision against the newest one."""

    url: str                          # masked
    reachable: bool
    current: str | None               # None for an empty database
    head: str | None
    up_to_date: bool


def redis_client(url: str, timeout: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from cars_bot.broker_urls import redis_py_url

    # No silent client-side retries: an unreachable broker is reported within `timeout`.
    return redis.Redis.from_url(redis_py_url(url), socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def _unreachable(what: str, url: str, settings: Settings, reason: str) -> DependencyUnavailable:
    from cars_bot.secret_masking import mask_url

    if settings.uses_embedded_broker and what == "broker":
        hint = "start it with `carsctl broker start` (or `carsctl up`), or set REDIS_URL"
    elif what == "broker":
        hint = "check that Redis runs and that REDIS_URL / CELERY_BROKER_URL is right"
    else:
        hint = "check that the database runs and that DATABASE_URL is right"
    return DependencyUnavailable(f"{what} unreachable at {mask_url(url)}: {reason}", hint=hint)


def check_broker(settings: Settings) -> BrokerInfo:
    """Ping the broker; return version and memory, or raise DependencyUnavailable."""
    from cars_bot.broker_urls import is_redis_url
    from cars_bot.secret_masking import mask_url

    url = settings.broker_url
    timeout = settings.broker_connect_timeout
    began = time.perf_counter()
    if is_redis_url(url):
        import redis

        try:
            client = redis_client(url, timeout)
            info = client.info()
            client.close()
        except (redis.exceptions.RedisError, OSError) as error:
            raise _unreachable("broker", url, settings, _reason(error)) from None
        return BrokerInfo(url=mask_url(url), reachable=True, kind="redis", embedded=settings.uses_embedded_broker,
                          version=info.get("redis_version"), used_memory=info.get("used_memory_human"),
                          latency_ms=round((time.perf_counter() - began) * 1000, 2))
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        raise _unreachable("broker", url, settings, _reason(error)) from None
    return BrokerInfo(url=mask_url(url), reachable=True, kind=url.split("://", 1)[0], embedded=False,
                      latency_ms=round((time.perf_counter() - began) * 1000, 2))


def check_database(settings: Settings) -> DatabaseState:
    """Connect to the database and read its migration state, or raise DependencyUnavailable."""
    from cars_bot.secret_masking import mask_url

    url = settings.database_url
    try:
        from cars_bot.db.migrate import status

        state = status(url)
    except Exception as error:  # noqa: BLE001 - any driver error means unreachable here
        raise _unreachable("database", url, settings, _reason(error)) from None
    return DatabaseState(url=mask_url(url), reachable=True, current=state.current, head=state.head,
                         up_to_date=state.up_to_date)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
