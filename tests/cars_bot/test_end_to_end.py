"""A post travels classify -> extract -> generate -> publish (outbox) through a real worker process,
and the seed's usage examples work verbatim against it."""

import time

import pytest
from sqlalchemy import func, select

from cars_bot.db.models import OutboxMessage, Post, PostStatus, Publication
from cars_bot.posts import import_records, read_jsonl, sample_posts_path
from tests.workers import celery_worker

pytestmark = [pytest.mark.slow]


@pytest.fixture
def worker(celery_app_real, db, tmp_path):
    with celery_worker(celery_app_real, pool="prefork", concurrency=2, log=tmp_path / "worker.log") as running:
        yield running


def _import_samples(db) -> list[int]:
    with db.begin() as session:
        return [post_id for post_id, _ in import_records(session, read_jsonl(sample_posts_path()))]


def _wait_final(db, ids: list[int], timeout: float = 60) -> dict[int, PostStatus]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db() as session:
            states = dict(session.execute(select(Post.id, Post.status).where(Post.id.in_(ids))).all())
        if all(s in (PostStatus.PUBLISHED, PostStatus.REJECTED, PostStatus.FAILED) for s in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"posts did not finish: {states}")


def test_sample_posts_are_published_to_the_outbox(worker, db, settings_home) -> None:
    from cars_bot.tasks import process_post_task

    ids = _import_samples(db)
    for post_id in ids:
        process_post_task.apply_async(args=[post_id])
    states = _wait_final(db, ids)
    published = [pid for pid, s in states.items() if s == PostStatus.PUBLISHED]
    rejected = [pid for pid, s in states.items() if s == PostStatus.REJECTED]
    assert len(published) == 3 and len(rejected) == 2, states
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Publication)) == 3
        texts = list(session.scalars(select(OutboxMessage.text)))
    assert len(texts) == 3 and any("Toyota Camry" in t for t in texts)
    assert all("start=contact_" in t for t in texts)


def test_seed_usage_examples_verbatim(worker, db, celery_app_real) -> None:
    from celery.result import AsyncResult

    from cars_bot.tasks import process_post_task, publish_post_task

    app = celery_app_real
    post_id = _import_samples(db)[0]

    # Синхронно (ждать результат)
    result = process_post_task.apply_async(args=[post_id])
    outcome = result.get(timeout=300)  # Ждать максимум 5 минут
    assert outcome["status"] == "ready"

    # С пользовательской retry политикой
    published = publish_post_task.apply_async(
        args=[post_id],
        retry=True,
        retry_policy={
            'max_retries': 5,
            'interval_start': 1,
            'interval_step': 2,
            'interval_max': 30,
        }
    )
    assert published.get(timeout=60)["status"] in ("published", "already_published")

    # Получение результата задачи
    task_id = published.id
    result = AsyncResult(task_id, app=app)
    assert result.ready() and result.successful()
    assert result.result == result.info and result.result["post_id"] == post_id

    # Асинхронно (в очередь)
    delayed = process_post_task.apply_async(args=[post_id], countdown=10, priority=7)
    deadline = time.monotonic() + 10
    scheduled = []
    while time.monotonic() < deadline and not scheduled:
        replies = app.control.inspect(timeout=1.0).scheduled() or {}
        scheduled = [entry for entries in replies.values() for entry in entries
                     if entry["request"]["id"] == delayed.id]
    assert scheduled, "the countdown task is held by the worker until its ETA"
    assert scheduled[0]["request"]["delivery_info"]["priority"] == 7  # the urgency asked for
    app.control.revoke(delayed.id)
