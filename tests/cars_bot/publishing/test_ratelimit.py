"""The cluster-wide publishing rate limit, against a real Redis."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from cars_bot.publishing.ratelimit import publish_key, redis_client, reserve_slot

pytestmark = pytest.mark.redis


@pytest.fixture
def limiter_redis(redis_url: str) -> Any:
    client = redis_client(redis_url)
    client.flushdb()
    return client


def test_the_21st_send_within_a_minute_waits(limiter_redis: Any) -> None:
    key = publish_key("@cars_news")
    waits = [reserve_slot(limiter_redis, key, 20) for _ in range(20)]
    assert waits == [0.0] * 20
    wait = reserve_slot(limiter_redis, key, 20)
    assert 55.0 < wait <= 60.0
    # a refused attempt reserves nothing: still 20 entries in the window
    assert limiter_redis.zcard(key) == 20
    # another channel has its own window
    assert reserve_slot(limiter_redis, publish_key("@other"), 20) == 0.0


def test_the_window_slides(limiter_redis: Any) -> None:
    key = publish_key("@fast")
    assert reserve_slot(limiter_redis, key, 2, window=0.3) == 0.0
    assert reserve_slot(limiter_redis, key, 2, window=0.3) == 0.0
    wait = reserve_slot(limiter_redis, key, 2, window=0.3)
    assert 0 < wait <= 0.3
    time.sleep(wait + 0.02)
    assert reserve_slot(limiter_redis, key, 2, window=0.3) == 0.0
    assert limiter_redis.pttl(key) > 0  # the key expires on its own


def _reserve_many(url: str, key: str, count: int, queue: Any) -> None:
    client = redis_client(url)
    queue.put([reserve_slot(client, key, 20) for _ in range(count)])


def test_the_limit_holds_across_processes(limiter_redis: Any, redis_url: str) -> None:
    key = publish_key("@cluster")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_reserve_many, args=(redis_url, key, 10, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    granted = sum(1 for waits in results for wait in waits if wait == 0.0)
    assert granted == 20  # four processes, 40 attempts, exactly the cluster's 20 per minute


def test_redis_client_understands_the_embedded_socket_url(limiter_redis: Any, redis_url: str) -> None:
    assert redis_client(redis_url).ping()
    assert redis_client(redis_url) is redis_client(redis_url)
