"""Suite 5: the soft time limit reached inside process_post_task. The run leaves no half-written rows
and no dangling claim: the post is marked failed with the reason, the task is in the failed registry,
and the posts around it are processed as usual."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cars_bot.db.models import CarData, FailedTask, Post, PostStatus
from tests.reliability.conftest import Stack, post_records, wait_for, write_jsonl
from tests.workers import celery_worker

pytestmark = [pytest.mark.slow]

SLOW_MODULE = "reliability_slow_backend"
SLOW_SOURCE = '''
"""Loaded by the test worker (-I): an analysis that hangs on posts saying "HANG" (as a stuck AI call
would)."""
import time

from cars_bot.ai import pipeline

_analyse = pipeline.RulesBackend.analyse


def analyse(self, text, **options):
    if "HANG" in text:
        time.sleep(30)
    return _analyse(self, text, **options)


pipeline.RulesBackend.analyse = analyse
'''


def _recorded(stack: Stack) -> bool:
    with stack.sessions() as session:
        return session.scalar(select(FailedTask.id)) is not None


def test_soft_time_limit_leaves_no_claim_and_no_half_written_rows(stack: Stack, tmp_path) -> None:
    from cars_bot.tasks.ai_tasks import process_post_task

    (stack.run.tmp / f"{SLOW_MODULE}.py").write_text(SLOW_SOURCE)
    records = post_records(4)
    records[1]["text"] += " HANG"
    ads = write_jsonl(tmp_path / "ads.jsonl", records)
    stored = stack.carsctl("post", "import", str(ads), "--no-process", "--json")
    assert stored.returncode == 0, stored.stderr
    with celery_worker(stack.app, pool="prefork", concurrency=1, queues="ai_processing",
                       extra=("-I", SLOW_MODULE), log=tmp_path / "worker.log"):
        with stack.sessions() as session:
            ids = list(session.scalars(select(Post.id).order_by(Post.message_id)))
        for post_id in ids:  # a 5 s soft limit (a normal post takes ~50 ms)
            process_post_task.apply_async(args=[post_id], soft_time_limit=5, time_limit=60)
        wait_for(lambda: sum(stack.statuses()[s] for s in ("ready", "rejected", "failed")) == 4
                 and _recorded(stack), 60, "the pipeline and the failed-task registry")
    assert stack.statuses()["failed"] == 1, stack.statuses()
    with stack.sessions() as session:
        hung = session.get(Post, ids[1])
        assert hung.status == PostStatus.FAILED and hung.claimed_by is None, (hung.status, hung.claimed_by)
        assert hung.status_reason == "processing took longer than its soft time limit (5s)"
        assert hung.is_sale is None and session.scalar(select(CarData).where(CarData.post_id == hung.id)) is None
        failures = session.execute(select(FailedTask.task_name, FailedTask.args, FailedTask.exception)).all()
    assert [(name.rsplit(".", 1)[1], args) for name, args, _ in failures] == [("process_post_task", [ids[1]])]
    assert "SoftTimeLimitExceeded" in failures[0][2]
