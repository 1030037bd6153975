"""One way in for a post, whoever brings it (the monitor service, `carsctl post add|import`): store it
de-duplicated on (channel, message id), attach the channel's seller contact, and send
`process_post_task` EXACTLY ONCE for it (prior-system.md section 10, defect 2).

Exactly once, across duplicate deliveries, concurrent ingesters and crashes:

1. one transaction stores the post (the unique constraint `uq_posts_channel_message` decides who
   created it) and CLAIMS its dispatch: `dispatch_task_id` is set only where it is still NULL and
   the post is new, so of two ingesters of the same post only one sends;
2. the task is sent with that id;
3. a second transaction records `dispatched_at` (and the caller's own writes, e.g. the monitor's
   position in the channel), so that a post with a task id but no `dispatched_at` is one whose send
   may have been lost (for the recovery sweep), and one with neither was never sent.

A send that fails releases the claim (the error propagates), so the next delivery dispatches it. A
post stored without dispatch (`dispatch=False`) is dispatched by a later ingest with `dispatch=True`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cars_bot.db.models import Post

#: Sends process_post_task for a post: (task id, post id) -> None. Raises if the broker refused it.
Send = Callable[[str, int], None]
#: Extra writes committed with the dispatch record: (session, post) -> None.
AlsoWrite = Callable[["Session", "Post"], None]


@dataclass(frozen=True, slots=True)
class IngestedPost:
    """A post after ingest: whether this call stored it, and the processing task this call sent."""

    post_id: int
    created: bool
    task_id: str | None  # None: nothing sent by this call (a duplicate already dispatched, or dispatch=False)
    dispatched_at: datetime | None = None


def celery_send(app: Any = None) -> Send:
    """A sender through a Celery app (default: the cars_bot app, imported on first use)."""

    def send(task_id: str, post_id: int) -> None:
        from cars_bot.task_names import PROCESS_POST

        target = app
        if target is None:
            from cars_bot.celery_app import app as target
        target.send_task(PROCESS_POST, args=[post_id], task_id=task_id)

    return send


def ingest_post(*, channel: str | int, text: str, message_id: int | None = None, media: list[Any] | None = None,
                message_ids: list[int] | None = None, media_group_id: int | None = None, link: str | None = None,
                dispatch: bool, send: Send | None = None, also: AlsoWrite | None = None,
                database_url: str | None = None) -> IngestedPost:
    """Store one post and, with `dispatch`, send its processing task exactly once (module docstring).

    `channel` is a channel reference (`@name`, a t.me link; created when unknown) or the id of a
    `channels` row (the monitor's channels, invite links included). Fields are taken as validated.
    """
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from cars_bot.db.models import Post, utcnow
    from cars_bot.db.session import session_scope

    fields = {"text": text, "message_id": message_id, "media": media, "message_ids": message_ids,
              "media_group_id": media_group_id, "link": link}
    for attempt in (1, 2):
        try:
            post_id, created, task_id = _store_and_claim(session_scope(database_url), channel, fields, dispatch)
            break
        except IntegrityError:
            # A concurrent ingest created the same channel a moment ago; the second attempt finds it.
            if attempt == 2:
                raise
    dispatched_at = None
    if task_id is not None:
        try:
            (send or celery_send())(task_id, post_id)
        except BaseException:
            with session_scope(database_url) as session:
                session.execute(update(Post).where(Post.id == post_id, Post.dispatch_task_id == task_id)
                                .values(dispatch_task_id=None).execution_options(synchronize_session=False))
            raise
        dispatched_at = utcnow()
    if task_id is not None or also is not None:
        with session_scope(database_url) as session:
            row = session.get(Post, post_id)
            if row is not None:
                if task_id is not None:
                    row.dispatched_at = dispatched_at
                if also is not None:
                    also(session, row)
    return IngestedPost(post_id=post_id, created=created, task_id=task_id, dispatched_at=dispatched_at)


def _store_and_claim(scope: Any, channel: str | int, fields: dict[str, Any],
                     dispatch: bool) -> tuple[int, bool, str | None]:
    """In one transaction: store the post and, with `dispatch`, claim its dispatch; (post id, created,
    the claimed task id or None)."""
    from sqlalchemy import update

    from cars_bot.db.models import Post, PostStatus

    with scope as session:
        post, created = _store(session, channel, **fields)
        if not dispatch:
            return post.id, created, None
        wanted = str(uuid.uuid4())
        claimed = session.execute(
            update(Post).where(Post.id == post.id, Post.dispatch_task_id.is_(None), Post.status == PostStatus.NEW)
            .values(dispatch_task_id=wanted).execution_options(synchronize_session=False))
        return post.id, created, wanted if claimed.rowcount == 1 else None  # type: ignore[attr-defined]


def _store(session: Session, channel: str | int, **fields: Any) -> tuple[Post, bool]:
    from cars_bot.db.models import Channel
    from cars_bot.posts import get_or_create_channel, store_channel_post

    if isinstance(channel, int):
        row = session.get(Channel, channel)
        if row is None:
            raise ValueError(f"no channel with id {channel}")
    else:
        row = get_or_create_channel(session, channel)
    post, created = store_channel_post(session, row, **fields)  # with the channel's seller contact
    session.flush()
    return post, created
