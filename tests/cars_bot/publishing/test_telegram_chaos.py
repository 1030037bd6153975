"""Chaos: 200 posts, two workers with their own clients and clocks minutes apart, the fake Telegram
timing out, cancelling, re-delivering, resetting and flood-waiting at random, workers dying between
the send and the commit, messages redelivered to both workers. Every post must end with exactly one
message in the channel, or a recorded permanent failure (and then at most one message)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.models import Post, PostStatus, Publication
from cars_bot.errors import TransientError
from cars_bot.publishing import telegram
from cars_bot.publishing.publication import PublishOutcome, publish_post
from cars_bot.publishing.telegram import TelegramPublisher, _ProcessRuntime
from tests.cars_bot.publishing.fake_telegram import FakeTelegramClient, FakeTelegramServer, telegram_settings
from tests.cars_bot.publishing.post_rows import make_post
from tests.cars_bot.publishing.test_telegram_windows import BOT, copies, skewed_clock  # noqa: F401 - a fixture

POSTS = 200
LEASE = 1.0  # seconds on the database's clock; far above a live send (call timeout 0.05 s + commits)
FAULTS = [(None, 45), ("flood", 10), ("hang", 14), ("wire", 6), ("late", 6), ("reset", 6), ("refused_reset", 5),
          ("crash", 2)]


class Queue:
    """The broker: jobs due at a time; a job taken is gone (acks late: a failed run is put back)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.busy = 0

    def put(self, post_id: int, delay: float = 0.0) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), post_id))

    def take(self) -> tuple[int | None, float]:
        """A due job, or (None, seconds until the next one) — (None, -1) when all is done."""
        with self._lock:
            if not self._heap:
                return None, (-1.0 if self.busy == 0 else 0.01)
            due, _, post_id = self._heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                return None, wait
            heapq.heappop(self._heap)
            self.busy += 1
            return post_id, 0.0

    def done(self) -> None:
        with self._lock:
            self.busy -= 1


def run_worker(name: str, engine: Any, server: FakeTelegramServer, queue: Queue, set_skew: Callable[[float], None],
               minutes: float, seed: int, stats: Counter[str], bot: bool, deadline: float,
               runtimes: list[_ProcessRuntime]) -> None:
    set_skew(minutes)  # this worker's wall clock
    rng = random.Random(seed)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    crash = threading.Event()

    @event.listens_for(factory, "before_commit")
    def _die(session: Session) -> None:
        if crash.is_set():
            crash.clear()
            raise RuntimeError("worker killed between the send and the commit")

    client = FakeTelegramClient(server)
    runtime = _ProcessRuntime(loop=asyncio.new_event_loop())
    runtimes.append(runtime)
    publisher = TelegramPublisher(telegram_settings(**(BOT if bot else {})), client=client, call_timeout=0.05,
                                  runtime=runtime)
    kinds, weights = zip(*FAULTS, strict=True)

    def fault() -> str | None:
        kind = rng.choices(kinds, weights)[0]
        stats[f"fault {kind}"] += 1
        if kind == "crash":
            client.after_send = lambda: (crash.set(), setattr(client, "after_send", None))
            return None
        return kind

    client.fault = fault
    client.hang_delay = lambda: rng.uniform(0.1, 3 * LEASE)  # queued: would land before or after the lease
    client.late_delay = lambda: rng.uniform(0.05, 0.6 * LEASE)  # received: lands within the lease
    client.latency = lambda: rng.uniform(0.0, 0.03)  # an ordinary send (the call timeout is 0.05 s)
    while time.monotonic() < deadline:
        post_id, wait = queue.take()
        if post_id is None:
            if wait < 0:
                return
            threading.Event().wait(min(wait, 0.02))  # the broker has nothing due yet
            continue
        try:
            result = publish_post(post_id, session_factory=factory, publisher=publisher, lease_seconds=LEASE,
                                  task_id=f"{name}-{post_id}")
            stats[f"result {result.status.value}"] += 1
        except TransientError as exc:
            stats[f"retry {type(exc).__name__}"] += 1
            # a retry comes back soon (celery's first backoff is 2-4 s against a 120 s lease)
            queue.put(post_id, min(float(exc.retry_after or 0.02), LEASE + 0.1))
        except RuntimeError as exc:
            if "worker killed" not in str(exc):
                stats[f"unexpected {type(exc).__name__}: {exc}"] += 1
                continue
            stats["worker died"] += 1
            telegram.abandon_loop(runtime)  # a dead process's queued requests die with it
            client.after_send = None
            queue.put(post_id, 0.05)
        finally:
            queue.done()


@pytest.mark.parametrize("mode", ["bot", "user session"])
def test_chaos_every_post_once_or_a_recorded_failure(factory: sessionmaker[Session], mode: str,
                                                     skewed_clock: Callable[[float], None]) -> None:  # noqa: F811
    engine = factory.kw["bind"]
    server = FakeTelegramServer()
    queue = Queue()
    posts = [make_post(factory, message_id=i) for i in range(1, POSTS + 1)]
    rng = random.Random(11)
    for n, post_id in enumerate(posts):  # the posts arrive over 2 s
        queue.put(post_id, n * 0.01)
        if rng.random() < 0.3:  # delivered to both workers (a redelivered message, a double enqueue)
            queue.put(post_id, n * 0.01 + rng.uniform(0, 0.03))
    stats: Counter[str] = Counter()
    runtimes: list[_ProcessRuntime] = []
    deadline = time.monotonic() + 240
    threads = [threading.Thread(target=run_worker, args=(name, engine, server, queue, skewed_clock, minutes, seed,
                                                         stats, mode == "bot", deadline, runtimes))
               for name, minutes, seed in (("a", -2.0, 1), ("b", 3.0, 2))]  # 2 minutes behind, 3 ahead
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [k for k in stats if k.startswith("unexpected")], stats
    assert queue.take() == (None, -1.0), "the run did not finish before its deadline"
    # The worker processes live on: their loops run again with their next tasks, and whatever telethon
    # still has queued on them goes out then.
    for runtime in runtimes:
        runtime.loop.run_until_complete(asyncio.sleep(3 * LEASE))
    server.settle()

    outcome: Counter[str] = Counter()
    with factory() as session:
        rows = {p.id: p for p in session.scalars(select(Post)).all()}
        pubs = {p.post_id: p for p in session.scalars(select(Publication)).all()}
    wrong: list[str] = []
    for post_id in posts:
        n = copies(server, post_id)
        post = rows[post_id]
        if n > 1:
            outcome[f"DUPLICATED ({post.status.value})"] += 1
            wrong.append(f"post {post_id}: {n} messages, {post.status.value}")
        elif post.status == PostStatus.PUBLISHED and n == 1:
            ids = {m.id for m in server.messages_mentioning(f"start=contact_{post_id}")}
            if set(pubs[post_id].message_ids) != ids:
                wrong.append(f"post {post_id}: recorded {pubs[post_id].message_ids}, in the channel {ids}")
            outcome["published once"] += 1
        elif post.status == PostStatus.FAILED and post.status_reason:
            outcome[f"failed, recorded ({n} message)"] += 1
        else:
            outcome[f"WRONG ({post.status.value}, {n} messages)"] += 1
            wrong.append(f"post {post_id}: {post.status.value} with {n} messages")
    print(f"\nchaos ({mode}): {dict(outcome)}; {dict(sorted(stats.items()))}")
    assert not wrong, wrong[:10]
    assert outcome["published once"] + sum(v for k, v in outcome.items() if k.startswith("failed")) == POSTS
    assert outcome["published once"] >= POSTS * 0.9
    assert stats["fault hang"] and stats["fault late"] and stats["fault flood"] and stats["worker died"]
    assert PublishOutcome.PUBLISHED  # (imported for the reader: the final states are the service's)
