"""Suite 1: `kill -9` of the worker's main process, three times at random moments, and of pool
children, while 300 posts go process -> publish (outbox). Every post ends published or rejected exactly
once; what a dead worker held is given back when `carsctl worker start` brings it back, not 2 h later.
"""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cars_bot.db.models import FailedTask, OutboxMessage, utcnow
from tests.reliability.conftest import REJECT_EVERY, Stack, post_records, wait_for, write_jsonl

pytestmark = [pytest.mark.slow]

POSTS = 300
KILLS = 3


def _unacked_tasks(stack: Stack) -> dict[str, int]:
    """Task id -> post id of every post task delivered and not acknowledged."""
    from cars_bot.broker import _task_message, _unacked_entry

    client = stack.app.connection_for_read().default_channel.client
    held = {}
    for raw in client.hvals("unacked"):
        message = _task_message(_unacked_entry(raw)[0])
        if message is not None and isinstance(message.first_arg, int):
            held[message.task_id] = message.first_arg
    return held


def _started_again(stack: Stack, task_ids: set[str], log_offset: int) -> bool:
    """Every task id has a "started" line in the worker's log after `log_offset`."""
    text = (stack.run.logs / "celery_worker-w.log").read_bytes()[log_offset:].decode("utf-8", "replace")
    return all(f"[{task_id}] started" in text for task_id in task_ids)


def test_killing_the_worker_loses_nothing_and_publishes_each_post_once(stack: Stack, tmp_path, capsys) -> None:
    from cars_bot.maintenance import RECOVERY_GRACE, recover_lost_work

    rng = random.Random()
    ads = write_jsonl(tmp_path / "ads.jsonl", post_records(POSTS))
    imported = stack.carsctl("post", "import", str(ads), "--json")
    assert imported.returncode == 0, imported.stderr
    stack.start_worker("w", "-c", "2")

    recovered_after: list[float] = []
    thresholds = sorted(rng.sample(range(POSTS // 10, POSTS * 7 // 10), KILLS))
    for round_, threshold in enumerate(thresholds):
        wait_for(lambda t=threshold: sum(stack.statuses()[s] for s in ("published", "rejected")) >= t,
                 120, f"{threshold} posts done")
        if round_ == 1:  # a pool child first: its task is requeued by the main process
            stack.kill9(rng.choice(stack.pool_children("w")))
            time.sleep(rng.uniform(0.05, 0.5))  # a random moment, not a synchronisation
        time.sleep(rng.uniform(0, 0.3))
        stack.kill9(stack.worker_pid("w"))
        died = time.monotonic()
        orphans = wait_for(lambda: _unacked_tasks(stack) or stack.finished(POSTS), 5, "the dead worker's messages")
        log_offset = (stack.run.logs / "celery_worker-w.log").stat().st_size
        restart = stack.carsctl("worker", "start", "w")
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert "removed stale" in restart.stderr
        if isinstance(orphans, dict):
            assert re.search(r"restored \d+ unacked message", restart.stderr), restart.stderr
            wait_for(lambda o=orphans, at=log_offset: _started_again(stack, set(o), at), 60, "the orphans to run again")
            recovered_after.append(time.monotonic() - died)

    rescued: list[int] = []
    try:
        try:
            wait_for(lambda: stack.finished(POSTS), 120, "every post to finish")
        except AssertionError:
            # A kill between a task's commit and its next send (or its ack) can leave a post whose message
            # is gone; the safety net (beat, every RECOVERY_INTERVAL) re-dispatches it once its grace has
            # passed. Run it as beat would, then everything must finish.
            net = recover_lost_work(stack.app, sessions=stack.sessions,
                                    now=utcnow() + RECOVERY_GRACE + timedelta(seconds=1))
            rescued = [*net.process, *net.publish]
            wait_for(lambda: stack.finished(POSTS), 120, "every post to finish after the safety net")
    except AssertionError:
        from cars_bot.broker import queue_depths
        from cars_bot.db.models import Post, Publication

        with stack.sessions() as session:
            stuck = session.execute(select(Post.id, Post.status, Post.claimed_by, Post.updated_at, Publication.status,
                                           Publication.task_id, Publication.error).outerjoin(Publication)
                                    .where(Post.status.not_in(["published", "rejected"]))).all()
        print("unfinished:", stuck, _unacked_tasks(stack), queue_depths(stack.app))
        raise
    # The safety net, driven directly as if its grace had passed: nothing is left to recover.
    later = utcnow() + RECOVERY_GRACE + timedelta(seconds=1)
    net = recover_lost_work(stack.app, sessions=stack.sessions, now=later)
    assert net.process == [] and net.publish == [] and net.orphans_restored == []

    counts = stack.statuses()
    published = POSTS - POSTS // REJECT_EVERY
    assert counts == {"published": published, "rejected": POSTS // REJECT_EVERY}, counts
    with stack.sessions() as session:
        rows = session.execute(select(OutboxMessage.post_id, func.count()).where(OutboxMessage.kind == "post")
                               .group_by(OutboxMessage.post_id)).all()
        failures = list(session.scalars(select(FailedTask.exception)))
    assert len(rows) == published and all(n == 1 for _, n in rows), "a post was published twice"
    outbox = stack.home / "outbox"
    assert len(list(outbox.glob("*.html"))) == published
    log_entries = re.findall(r"^=== outbox #\d+ \| [^|]+ \| post \| post (\d+) \|",
                             (outbox / "outbox.log").read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert len(log_entries) == len(set(log_entries)) == published
    assert failures == [], failures
    with capsys.disabled():
        print(f"\nsuite 1: {POSTS} sent, {counts['published']} published, {counts['rejected']} rejected, "
              f"0 duplicates, 0 lost; death -> orphans processed again after worker start: "
              + ", ".join(f"{s:.1f}s" for s in recovered_after) + f"; re-dispatched by the safety net: {rescued}")
