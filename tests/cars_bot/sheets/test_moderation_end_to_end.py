"""Manual moderation end to end on the embedded stack: a real worker (MODERATION=manual) analyses the
sample posts, the sales wait as PENDING in "Очередь публикаций"; APPROVED is published by the worker
on the next sync, REJECTED is rejected with the admin's note."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from cars_bot.db.models import OutboxMessage, Post, PostStatus
from cars_bot.posts import import_records, read_jsonl, sample_posts_path
from cars_bot.sheets.admin import SyncKind, run_recorded
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import Q_NOTE, Q_POST_ID, Q_STATUS, QUEUE
from tests.workers import celery_worker

pytestmark = [pytest.mark.slow]


def _wait(db, ids: list[int], done: set[PostStatus], timeout: float = 60) -> dict[int, PostStatus]:
    deadline = time.monotonic() + timeout
    while True:
        with db() as session:
            states = {pid: s for pid, s in session.execute(select(Post.id, Post.status).where(Post.id.in_(ids)))}
        if all(s in done for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"posts did not settle: {states}")
        time.sleep(0.2)


def _decide(workbook: LocalWorkbook, post_id: int, **cells: str) -> None:
    row = next(r for r in workbook.read(QUEUE) if r.cell(Q_POST_ID) == str(post_id))
    workbook.update(QUEUE, row.number, cells)
    workbook.flush()


def test_pending_approved_published_and_pending_rejected(celery_app_real, db, tmp_path) -> None:
    from cars_bot.tasks import process_post_task

    workbook = LocalWorkbook(tmp_path / "workbook.json")
    with celery_worker(celery_app_real, env={"MODERATION": "manual"}, log=tmp_path / "worker.log"):
        with db.begin() as session:
            ids = [post_id for post_id, _ in import_records(session, read_jsonl(sample_posts_path()))]
        for post_id in ids:
            process_post_task.apply_async(args=[post_id])
        states = _wait(db, ids, {PostStatus.PENDING, PostStatus.REJECTED})
        pending = sorted(pid for pid, s in states.items() if s is PostStatus.PENDING)
        assert len(pending) == 3, states  # the three sale ads wait; nothing was published
        run_recorded(SyncKind.QUEUE, db, workbook)
        assert {r.cell(Q_POST_ID): r.cell(Q_STATUS) for r in workbook.read(QUEUE)} == {
            str(pid): "PENDING" for pid in pending}

        approved, rejected, waiting = pending
        _decide(workbook, approved, **{Q_STATUS: "APPROVED"})
        _decide(workbook, rejected, **{Q_STATUS: "REJECTED", Q_NOTE: "цена не рыночная"})
        result = run_recorded(SyncKind.QUEUE, db, workbook)
        assert (result.approved, result.rejected) == (1, 1)
        _wait(db, [approved], {PostStatus.PUBLISHED})

    with db() as session:
        assert session.get(Post, rejected).status_reason == "rejected by an admin: цена не рыночная"
        assert session.get(Post, waiting).status is PostStatus.PENDING
        assert session.scalars(select(OutboxMessage.post_id)).all() == [approved]
    assert run_recorded(SyncKind.QUEUE, db, workbook).rows_updated == 1
    statuses = {r.cell(Q_POST_ID): r.cell(Q_STATUS) for r in workbook.read(QUEUE)}
    assert statuses == {str(approved): "PUBLISHED", str(rejected): "REJECTED", str(waiting): "PENDING"}
