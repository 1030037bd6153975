"""Publication queue sync: the sheet "Очередь публикаций", and the moderation it carries.

- ``MODERATION=manual``: a post that passes the filters is stored ``pending`` (not published) and
  listed here as PENDING. An admin sets "Статус" to APPROVED: the next sync moves the post to
  ``ready`` and sends its publication; REJECTED: the post is ``rejected`` with the admin's
  "Примечание" as the reason. Each decision is applied once: the post moves only out of
  ``pending`` (a conditional UPDATE), so two syncs racing publish it once.
- ``MODERATION=auto`` (default): published posts are listed as PUBLISHED for the record.
- Each post has ONE row, appended once (unique by "ID поста") and then updated in place: the bot
  writes PUBLISHED over PENDING/APPROVED once the post is published. Posts published before the
  last :data:`RECORD_DAYS` days are not listed.

Requests to Google per run: 1 metadata, 1 read, then at most 1 batch of updates and 1 append (which
reads the sheet again to stay unique): 2 when nothing changed, at most 5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cars_bot.db.models import CarData, Channel, Post, PostStatus, utcnow
from cars_bot.sheets.cells import format_sheet_datetime, note_problem, parse_count, to_utc
from cars_bot.sheets.workbook import (
    Q_CAR,
    Q_CHANNEL,
    Q_LINK,
    Q_NOTE,
    Q_POST_ID,
    Q_PRICE,
    Q_PROCESSED,
    Q_STATUS,
    QUEUE,
    CellValue,
    Workbook,
)

#: Published posts are listed for the record when published within this many days.
RECORD_DAYS = 7
PENDING, APPROVED, REJECTED, PUBLISHED = "PENDING", "APPROVED", "REJECTED", "PUBLISHED"
_STATUS_WORDS = {"pending": PENDING, "approved": APPROVED, "rejected": REJECTED, "published": PUBLISHED,
                 "ожидает": PENDING, "одобрено": APPROVED, "отклонено": REJECTED, "опубликовано": PUBLISHED}


@dataclass(frozen=True, slots=True)
class QueueSyncResult:
    """What one queue sync did: decisions applied, rows appended and updated, problems."""

    approved: int  # posts moved to ready and sent to publishing
    rejected: int
    appended: int
    rows_updated: int
    problems: tuple[str, ...]
    synced_at: str


def sync_queue(session: Session, workbook: Workbook, now: datetime | None = None, *,
               enqueue_publish: Callable[[int], Any]) -> QueueSyncResult:
    """Apply the admins' decisions, then list new pending and published posts (see the module docstring)."""
    now = to_utc(now or utcnow())
    workbook.ensure_sheet(QUEUE)
    rows = workbook.read(QUEUE)
    problems: list[str] = []
    listed: dict[int, Any] = {}
    for row in rows:
        post_id = parse_count(row.cell(Q_POST_ID))
        if post_id is not None:
            listed.setdefault(post_id, row)

    approved: list[int] = []
    rejected = 0
    for post_id, row in listed.items():
        word = row.cell(Q_STATUS)
        decision = _STATUS_WORDS.get(word.casefold()) if word else None
        if word and decision is None:
            note_problem(problems, f"{QUEUE} row {row.number}: {word!r} is not PENDING, APPROVED or REJECTED")
            continue
        if decision == APPROVED and _decide(session, post_id, PostStatus.READY, None):
            approved.append(post_id)
        elif decision == REJECTED:
            note = row.cell(Q_NOTE)
            reason = f"rejected by an admin: {note}" if note else "rejected by an admin"
            rejected += _decide(session, post_id, PostStatus.REJECTED, reason)
    session.commit()
    for post_id in approved:  # after the commit: the publication claims a ready post
        enqueue_publish(post_id)

    states = _states(session, listed)
    for post_id, row in listed.items():
        if states.get(post_id) == PostStatus.PUBLISHED and row.cell(Q_STATUS).upper() != PUBLISHED:
            workbook.update(QUEUE, row.number, {Q_STATUS: PUBLISHED})
    rows_updated = workbook.flush()  # one cell per row
    new_rows = _new_rows(session, set(listed), now)
    appended = workbook.append(QUEUE, new_rows, unique_by=Q_POST_ID) if new_rows else 0
    return QueueSyncResult(approved=len(approved), rejected=rejected, appended=appended, rows_updated=rows_updated,
                           problems=tuple(problems), synced_at=now.isoformat())


def _decide(session: Session, post_id: int, status: PostStatus, reason: str | None) -> bool:
    """Move the post out of `pending` (only from there); True when this call moved it."""
    values: dict[str, Any] = {"status": status, "status_reason": reason}
    if status == PostStatus.READY:
        values["processed_at"] = utcnow()  # the recovery of stale ready posts counts from the approval
    result = session.execute(update(Post).where(Post.id == post_id, Post.status == PostStatus.PENDING)
                             .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def _states(session: Session, post_ids: dict[int, Any]) -> dict[int, PostStatus]:
    if not post_ids:
        return {}
    query = select(Post.id, Post.status).where(Post.id.in_(list(post_ids)))
    return {post_id: status for post_id, status in session.execute(query)}


def _new_rows(session: Session, listed: set[int], now: datetime) -> list[dict[str, CellValue]]:
    """Rows for the pending posts and the recently published posts the sheet does not list yet."""
    query = (select(Post.id, Post.status, Post.processed_at, Post.link, Channel.username, CarData.brand,
                    CarData.model, CarData.year, CarData.price)
             .join(Channel, Channel.id == Post.channel_id).outerjoin(CarData, CarData.post_id == Post.id)
             .where(or_(Post.status == PostStatus.PENDING,
                        (Post.status == PostStatus.PUBLISHED)
                        & (Post.published_at >= now - timedelta(days=RECORD_DAYS))))
             .order_by(Post.id))
    rows: list[dict[str, CellValue]] = []
    for r in session.execute(query):
        if r.id in listed:
            continue
        car = " ".join(str(part) for part in (r.brand, r.model, r.year) if part)
        rows.append({Q_POST_ID: r.id, Q_CHANNEL: "@" + r.username if "/" not in r.username else r.username,
                     Q_PROCESSED: format_sheet_datetime(r.processed_at), Q_CAR: car, Q_PRICE: r.price or "",
                     Q_STATUS: PENDING if r.status == PostStatus.PENDING else PUBLISHED, Q_LINK: r.link or "",
                     Q_NOTE: ""})
    return rows
