"""The sheet "Очередь публикаций": manual moderation (PENDING -> APPROVED -> published, PENDING ->
REJECTED with the admin's note), published posts listed for the record, one row per post updated in place."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from cars_bot.db.models import CarData, Post, PostStatus
from cars_bot.posts import store_post
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.queue_sync import sync_queue
from cars_bot.sheets.workbook import Q_CAR, Q_NOTE, Q_POST_ID, Q_PRICE, Q_STATUS, QUEUE
from tests.cars_bot.sheets.conftest import NOW
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer


def _post(session: Session, status: PostStatus, message_id: int, **fields) -> int:
    post, _ = store_post(session, channel="@cars_msk", text=f"ad {message_id}", message_id=message_id)
    post.status, post.processed_at = status, NOW - timedelta(minutes=5)
    for name, value in fields.items():
        setattr(post, name, value)
    session.flush()
    session.add(CarData(post_id=post.id, brand="Toyota", model="Camry", year=2018, price=2_150_000))
    session.commit()
    return post.id


def _rows(workbook) -> dict[str, dict[str, str]]:
    return {r.cell(Q_POST_ID): r for r in workbook.read(QUEUE)}


def _set(workbook, post_id: int, **cells: str) -> None:
    row = _rows(workbook)[str(post_id)]
    workbook.update(QUEUE, row.number, cells)
    workbook.flush()


def _status(session: Session, post_id: int) -> tuple[PostStatus, str | None]:
    session.expire_all()
    post = session.get(Post, post_id)
    return post.status, post.status_reason


def test_pending_posts_wait_and_the_admin_decides(session: Session, workbook: LocalWorkbook) -> None:
    keep = _post(session, PostStatus.PENDING, 1)
    drop = _post(session, PostStatus.PENDING, 2)
    sent: list[int] = []
    result = sync_queue(session, workbook, NOW, enqueue_publish=sent.append)
    assert (result.appended, result.approved, result.rejected) == (2, 0, 0) and sent == []
    rows = _rows(workbook)
    assert rows[str(keep)][Q_STATUS] == "PENDING" and rows[str(keep)][Q_CAR] == "Toyota Camry 2018"
    assert rows[str(keep)][Q_PRICE] == "2150000"

    _set(workbook, keep, **{Q_STATUS: "APPROVED"})
    _set(workbook, drop, **{Q_STATUS: "rejected", Q_NOTE: "битая, по фото видно"})
    result = sync_queue(session, workbook, NOW, enqueue_publish=sent.append)
    assert (result.approved, result.rejected, result.appended) == (1, 1, 0)
    assert sent == [keep] and _status(session, keep)[0] is PostStatus.READY
    assert _status(session, drop) == (PostStatus.REJECTED, "rejected by an admin: битая, по фото видно")

    # the next sync applies nothing twice (the post left `pending`), and the publication shows up in place
    post = session.get(Post, keep)
    post.status, post.published_at = PostStatus.PUBLISHED, NOW
    session.commit()
    workbook.writes = 0
    result = sync_queue(session, workbook, NOW, enqueue_publish=sent.append)
    assert (result.approved, result.rejected, result.appended, result.rows_updated) == (0, 0, 0, 1)
    assert sent == [keep] and workbook.writes == 1
    assert _rows(workbook)[str(keep)][Q_STATUS] == "PUBLISHED" and len(workbook.read(QUEUE)) == 2
    workbook.writes = 0
    assert sync_queue(session, workbook, NOW, enqueue_publish=sent.append).rows_updated == 0
    assert workbook.writes == 0


def test_automatic_mode_lists_published_posts_for_the_record(session: Session, workbook: LocalWorkbook) -> None:
    recent = _post(session, PostStatus.PUBLISHED, 1, published_at=NOW - timedelta(hours=1))
    _post(session, PostStatus.PUBLISHED, 2, published_at=NOW - timedelta(days=30))  # too old to list
    _post(session, PostStatus.REJECTED, 3)
    result = sync_queue(session, workbook, NOW, enqueue_publish=lambda _: None)
    assert result.appended == 1 and list(_rows(workbook)) == [str(recent)]
    assert _rows(workbook)[str(recent)][Q_STATUS] == "PUBLISHED"
    assert sync_queue(session, workbook, NOW, enqueue_publish=lambda _: None).appended == 0


def test_an_unknown_status_is_reported_and_nothing_happens(session: Session, workbook: LocalWorkbook) -> None:
    post_id = _post(session, PostStatus.PENDING, 1)
    sync_queue(session, workbook, NOW, enqueue_publish=lambda _: None)
    _set(workbook, post_id, **{Q_STATUS: "может быть"})
    result = sync_queue(session, workbook, NOW, enqueue_publish=lambda _: None)
    assert result.problems and "'может быть' is not PENDING, APPROVED or REJECTED" in result.problems[0]
    assert _status(session, post_id)[0] is PostStatus.PENDING


def test_queue_through_google(session: Session, fake_sheets: FakeSheetsServer) -> None:
    from tests.cars_bot.sheets.test_google import SHEET_ID, workbook_for

    fake_sheets.spreadsheet(SHEET_ID)
    post_id = _post(session, PostStatus.PENDING, 1)
    sent: list[int] = []
    sync_queue(session, workbook_for(fake_sheets), NOW, enqueue_publish=sent.append)
    google = workbook_for(fake_sheets)
    _set(google, post_id, **{Q_STATUS: "APPROVED"})
    fake_sheets.requests.clear()
    result = sync_queue(session, workbook_for(fake_sheets), NOW, enqueue_publish=sent.append)
    assert result.approved == 1 and sent == [post_id]
    assert len(fake_sheets.requests) == 2 and fake_sheets.count("POST") == 0  # metadata and one read
    post = session.get(Post, post_id)
    post.status, post.published_at = PostStatus.PUBLISHED, NOW
    session.commit()
    fake_sheets.requests.clear()
    assert sync_queue(session, workbook_for(fake_sheets), NOW, enqueue_publish=sent.append).rows_updated == 1
    assert len(fake_sheets.requests) == 3 and fake_sheets.count("POST") == 1  # + one batch of updates
    assert _rows(workbook_for(fake_sheets))[str(post_id)][Q_STATUS] == "PUBLISHED"
