"""Publishing a ready post exactly once, and sending a seller's contact to a subscriber.

Plain functions over a SQLAlchemy session factory and a publisher (the Telegram adapter or the outbox),
so they run and are tested without a worker.

Exactly-once scheme (prior-system.md section 10, defect 4):

1. **Claim + intent, committed before the send.** One transaction runs
   ``UPDATE posts SET status='publishing' WHERE id=:id AND status='ready'`` (only one delivery can win),
   renders the post and writes the :class:`Publication` intent row (status SENDING, the rendered text,
   the task id). Nothing is sent unless this commit succeeded.
2. **Send**, then **one transaction** marks the publication SENT/OUTBOX with the message ids, the post
   PUBLISHED with ``published_at``, and adds 1 to the channel's ``published_posts``.
3. **A refused send** (FloodWait, nothing reached Telegram: :class:`NotSent`) rolls the claim back
   (post -> ready, intent deleted) and is retried. A permanent error marks both FAILED with the reason.
   A send whose outcome is unknown (connection lost, timeout, the soft time limit) *releases* the intent
   (``error`` set) and is retried.
4. **Redelivery** finds the post 'publishing' with a SENDING intent. An intent younger than the lease
   (:data:`LEASE_SECONDS`, longer than the task's hard time limit) and not released may belong to a
   delivery that is still sending: retry later. Otherwise take the intent over (a compare-and-set
   UPDATE, so only one delivery does) and ask the publisher ``find_published(channel, post_id)``:
   Telegram scans the channel for the post's own deep link ``start=contact_<post_id>``; the outbox
   looks for its row. Found: commit step 2 with those ids, without sending. Definitely absent: send the
   recorded text, then step 2. Cannot tell: mark the post FAILED for a person to check (at most once
   wins over a possible duplicate).
5. A post already PUBLISHED returns ``already_published`` without sending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cars_bot.db.models import (
    Channel,
    ContactRequest,
    Post,
    PostStatus,
    Publication,
    PublicationStatus,
    Subscription,
    User,
    utcnow,
)
from cars_bot.errors import PermanentError, TransientError
from cars_bot.publishing.render import MAX_ALBUM_ITEMS, render_post

logger = logging.getLogger("cars_bot.publishing")

#: Seconds an unreleased SENDING intent is presumed to belong to a live delivery. Longer than the hard
#: time limit of publish_post_task (90 s): after it, the delivery that wrote the intent is certainly dead.
LEASE_SECONDS = 120.0
#: The same for a contact request (send_contact_info_task's hard limit is 60 s).
CONTACT_LEASE_SECONDS = 90.0

SessionFactory = Callable[[], Session]
Limiter = Callable[[], float]


class NotSent(TransientError):
    """The send was refused or never attempted (FloodWait, failure before sending): nothing was posted."""


class RateLimited(NotSent):
    """The cluster-wide publishing rate is used up: wait `retry_after` seconds (not a failure)."""


class Publisher(Protocol):
    """What the service needs from a transport: the Telegram adapter and the outbox both provide it."""

    kind: str  # "telegram" | "outbox"
    channel: str  # the target of channel posts
    bot_username: str | None
    publication_status: PublicationStatus

    def send_post(self, channel: str, html: str, media_refs: list[dict[str, Any]], *,
                  post_id: int | None = None) -> list[int]:
        """Post `html` (with the referenced source media as an album) and return the message ids."""
        ...

    def send_message(self, recipient: str | int, html: str) -> int:
        """Send a private message and return its id."""
        ...

    def find_published(self, channel: str, post_id: int, *, after_id: int | None = None,
                       since: datetime | None = None) -> list[int] | None:
        """Ids of an already-sent post for `post_id`, [] when certainly absent, None when unknown."""
        ...


# --------------------------------------------------------------------------------------------------
# publishing


def publish_post(
    post_id: int,
    *,
    session_factory: SessionFactory,
    publisher: Publisher,
    limiter: Limiter | None = None,
    task_id: str | None = None,
    bot_username: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> dict[str, Any]:
    """Publish post `post_id` exactly once (see the module docstring) and return the outcome.

    Outcomes (``status``): ``published``, ``already_published``, ``not_found``, ``not_ready``,
    ``failed`` (a permanent error, recorded on the post). Raises :class:`TransientError` (with
    ``retry_after``) when the task should run again later: rate limit, FloodWait, connection trouble,
    or another delivery holding the post.
    """
    with session_factory() as session:
        post = session.get(Post, post_id)
        if post is None:
            return {"status": "not_found", "post_id": post_id}
        status = post.status
    if status == PostStatus.PUBLISHED:
        return _already_published(session_factory, post_id)
    if status == PostStatus.PUBLISHING:
        return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=limiter,
                       task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
    if status != PostStatus.READY:
        return {"status": "not_ready", "post_id": post_id, "post_status": status.value}

    _wait_for_slot(limiter, post_id)
    claim = _claim(post_id, session_factory=session_factory, publisher=publisher, task_id=task_id,
                   bot_username=bot_username)
    if claim is None:
        # Another delivery changed the post between our read and our claim: look again (once).
        with session_factory() as session:
            post = session.get(Post, post_id)
            status = post.status if post is not None else None
        if status == PostStatus.PUBLISHED:
            return _already_published(session_factory, post_id)
        if status == PostStatus.PUBLISHING:
            return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=None,
                           task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
        return {"status": "not_ready", "post_id": post_id,
                "post_status": status.value if status else "missing"}
    if claim.get("status") == "resume":
        return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=None,
                       task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
    if claim.get("status"):
        return claim
    ids = _send_or_record(post_id, claim, session_factory=session_factory, publisher=publisher)
    if isinstance(ids, dict):
        return ids
    return _finalize(post_id, claim["channel_id"], ids, session_factory=session_factory,
                     publisher=publisher, recovered=False)


def _wait_for_slot(limiter: Limiter | None, post_id: int) -> None:
    if limiter is None:
        return
    wait = float(limiter())
    if wait > 0:
        raise RateLimited(f"publishing rate limit reached; post {post_id} waits {wait:.1f}s", retry_after=wait)


def _already_published(session_factory: SessionFactory, post_id: int) -> dict[str, Any]:
    with session_factory() as session:
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        ids = list(pub.message_ids) if pub is not None else []
    return {"status": "already_published", "post_id": post_id, "message_ids": ids}


def media_refs_for(post: Post) -> list[dict[str, Any]]:
    """The source messages whose media the published post re-sends (at most 10, by message id).

    `has_media` follows the actual media (prior defect 8): a text-only post, even with
    ``message_ids=[id]``, has no media refs. Items of ``post.media`` may be dicts naming their own
    ``message_id``/``channel``; otherwise the post's ``message_ids`` (or ``message_id``) are used.
    """
    media = list(post.media or [])
    if not media:
        return []
    source = _source_peer(post.channel) if post.channel is not None else None
    refs: dict[tuple[str, int], dict[str, Any]] = {}
    for item in media:
        if isinstance(item, dict) and item.get("message_id") is not None:
            channel = str(item.get("channel") or item.get("chat") or source or "")
            refs[(channel, int(item["message_id"]))] = {"channel": channel, "message_id": int(item["message_id"])}
    if not refs and source is not None:
        for message_id in (post.message_ids or [post.message_id]):
            refs[(source, int(message_id))] = {"channel": source, "message_id": int(message_id)}
    ordered = sorted(refs.values(), key=lambda ref: ref["message_id"])
    return [ref for ref in ordered if ref["channel"]][:MAX_ALBUM_ITEMS]


def _source_peer(channel: Channel) -> str | None:
    name = (channel.username or "").strip()
    if name.lstrip("-").isdigit():
        return name
    if name:
        return "@" + name.lstrip("@")
    if channel.telegram_id is not None:
        return str(channel.telegram_id)
    return None


def _render(post: Post, publisher: Publisher, bot_username: str | None) -> tuple[str, list[dict[str, Any]]]:
    refs = media_refs_for(post)
    html = render_post(
        post.car, post.summary, post_id=post.id,
        bot_username=bot_username or getattr(publisher, "bot_username", None),
        has_media=bool(refs),
    )
    return html, refs


def _claim(post_id: int, *, session_factory: SessionFactory, publisher: Publisher, task_id: str | None,
           bot_username: str | None) -> dict[str, Any] | None:
    """Claim the post and commit the SENDING intent. None when another delivery claimed it first."""
    now = utcnow()
    with session_factory() as session, session.begin():
        # The claim is the first statement: on SQLite it takes the write lock before any read, so a
        # concurrent delivery waits here and then sees 'publishing' (no lock-upgrade failure).
        claimed = session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == PostStatus.READY)
            .values(status=PostStatus.PUBLISHING, status_reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            return None
        post = session.get(Post, post_id, populate_existing=True)
        assert post is not None
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        if pub is not None and pub.status == PublicationStatus.SENDING:
            # Set back to 'ready' by hand while an intent was open: the earlier send may have happened.
            # Keep the intent, released, and let _resume verify the channel before any send.
            pub.error = "post was set back to 'ready' while a send was in flight"
            pub.updated_at = now
            return {"status": "resume"}
        if pub is not None and pub.status in (PublicationStatus.SENT, PublicationStatus.OUTBOX):
            # Delivered before and set back to 'ready' by hand: exactly once wins, do not re-post.
            post.status = PostStatus.PUBLISHED
            post.published_at = post.published_at or pub.sent_at or now
            return {"status": "already_published", "post_id": post_id, "message_ids": list(pub.message_ids)}
        try:
            html, refs = _render(post, publisher, bot_username)
        except ValueError as exc:
            post.status = PostStatus.FAILED
            post.status_reason = f"render failed: {exc}"
            return {"status": "failed", "post_id": post_id, "reason": post.status_reason}
        if pub is None:
            pub = Publication(post_id=post_id)
            session.add(pub)
        pub.status = PublicationStatus.SENDING
        pub.target = publisher.channel
        pub.text = html
        pub.message_ids = []
        pub.task_id = task_id
        pub.sent_at = None
        pub.error = None
        pub.updated_at = now
        session.flush()
        return {"channel_id": post.channel_id, "publication_id": pub.id, "html": html, "refs": refs,
                "target": publisher.channel}


def _send_or_record(post_id: int, claim: dict[str, Any], *, session_factory: SessionFactory,
                    publisher: Publisher) -> list[int] | dict[str, Any]:
    """Send the claimed post; on failure leave the database in the state the next delivery expects."""
    try:
        ids = publisher.send_post(claim["target"], claim["html"], claim["refs"], post_id=post_id)
    except PermanentError as exc:
        return _record_failure(post_id, claim["publication_id"], str(exc), session_factory)
    except NotSent:
        _unclaim(post_id, claim["publication_id"], session_factory)
        raise
    except Exception as exc:
        # The outcome is unknown (the request may have reached Telegram). Release the intent so the
        # next delivery verifies the channel at once, and make sure there is a next delivery.
        _release(claim["publication_id"], f"send outcome unknown: {type(exc).__name__}: {exc}",
                 session_factory)
        if isinstance(exc, TransientError):
            raise
        raise TransientError(f"post {post_id}: send outcome unknown ({type(exc).__name__})") from exc
    ids = [int(i) for i in ids]
    if not ids:
        _release(claim["publication_id"], "publisher returned no message id", session_factory)
        raise TransientError(f"post {post_id}: publisher returned no message id")
    return ids


def _finalize(post_id: int, channel_id: int, ids: list[int], *, session_factory: SessionFactory,
              publisher: Publisher, recovered: bool) -> dict[str, Any]:
    """The one transaction after a send: publication confirmed, post published, channel counter."""
    now = utcnow()
    with session_factory() as session, session.begin():
        won = session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == PostStatus.PUBLISHING)
            .values(status=PostStatus.PUBLISHED, published_at=now, status_reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won == 1:
            session.execute(
                update(Publication)
                .where(Publication.post_id == post_id)
                .values(status=publisher.publication_status, message_ids=ids, sent_at=now, error=None,
                        updated_at=now)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(Channel)
                .where(Channel.id == channel_id)
                .values(published_posts=Channel.published_posts + 1)
                .execution_options(synchronize_session=False)
            )
    if won != 1:  # another delivery finished first; nothing was written
        return _already_published(session_factory, post_id)
    logger.info("post %s published to %s as %s%s", post_id, publisher.channel, ids,
                " (recovered after a crash)" if recovered else "")
    return {"status": "published", "post_id": post_id, "target": publisher.channel,
            "publication": publisher.publication_status.value, "message_ids": ids, "recovered": recovered}


def _record_failure(post_id: int, publication_id: int, reason: str,
                    session_factory: SessionFactory) -> dict[str, Any]:
    now = utcnow()
    reason = reason[:2000]
    with session_factory() as session, session.begin():
        session.execute(
            update(Post).where(Post.id == post_id)
            .values(status=PostStatus.FAILED, status_reason=f"publishing failed: {reason}", updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Publication).where(Publication.id == publication_id)
            .values(status=PublicationStatus.FAILED, error=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    logger.error("post %s: publishing failed permanently: %s", post_id, reason)
    return {"status": "failed", "post_id": post_id, "reason": reason}


def _unclaim(post_id: int, publication_id: int, session_factory: SessionFactory) -> None:
    """Nothing was sent: undo the claim so the retry starts afresh."""
    now = utcnow()
    with session_factory() as session, session.begin():
        session.execute(
            update(Post).where(Post.id == post_id, Post.status == PostStatus.PUBLISHING)
            .values(status=PostStatus.READY, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            delete(Publication).where(Publication.id == publication_id,
                                      Publication.status == PublicationStatus.SENDING)
            .execution_options(synchronize_session=False)
        )


def _release(publication_id: int, reason: str, session_factory: SessionFactory) -> None:
    """Mark an intent as no longer owned by a live delivery (the next one may verify and take over)."""
    try:
        with session_factory() as session, session.begin():
            session.execute(
                update(Publication)
                .where(Publication.id == publication_id, Publication.status == PublicationStatus.SENDING)
                .values(error=reason[:2000], updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    except Exception:  # the lease still expires; the original error matters more
        logger.exception("could not release publication intent %s", publication_id)


def _resume(post_id: int, *, session_factory: SessionFactory, publisher: Publisher, limiter: Limiter | None,
            task_id: str | None, bot_username: str | None, lease_seconds: float) -> dict[str, Any]:
    """The post is 'publishing': wait for a live delivery, or verify and finish a dead one's work."""
    now = utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    with session_factory() as session:
        post = session.get(Post, post_id)
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        if post is None:
            return {"status": "not_found", "post_id": post_id}
        channel_id = post.channel_id
        post_updated = post.updated_at
        refs: list[dict[str, Any]] = []
        if pub is None or pub.status != PublicationStatus.SENDING:
            intent = None
        else:
            intent = {"id": pub.id, "target": pub.target, "text": pub.text, "created_at": pub.created_at,
                      "updated_at": pub.updated_at, "released": pub.error is not None}
            refs = media_refs_for(post)

    if intent is None:
        # 'publishing' without an open intent: claimed by a delivery that died before its first commit
        # could not happen (claim and intent share a transaction), so this is a hand-edited row or a
        # confirmed publication whose post row was edited. Without an intent nothing was sent.
        if post_updated > cutoff:
            raise TransientError(f"post {post_id} is being published by another delivery",
                                 retry_after=_remaining(post_updated, cutoff))
        with session_factory() as session, session.begin():
            session.execute(
                update(Post).where(Post.id == post_id, Post.status == PostStatus.PUBLISHING,
                                   Post.updated_at <= cutoff)
                .values(status=PostStatus.READY, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return publish_post(post_id, session_factory=session_factory, publisher=publisher, limiter=limiter,
                            task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)

    if not intent["released"] and intent["updated_at"] > cutoff:
        raise TransientError(f"post {post_id} is being published by another delivery",
                             retry_after=_remaining(intent["updated_at"], cutoff))

    # Take the intent over: only one delivery passes this compare-and-set.
    with session_factory() as session, session.begin():
        taken = session.execute(
            update(Publication)
            .where(Publication.id == intent["id"], Publication.status == PublicationStatus.SENDING,
                   (Publication.error.is_not(None)) | (Publication.updated_at <= cutoff))
            .values(task_id=task_id, error=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
    if taken != 1:
        raise TransientError(f"post {post_id} was taken over by another delivery", retry_after=lease_seconds)

    if intent["target"] != publisher.channel:
        # Configuration changed (outbox -> Telegram, or another channel) since the intent was written:
        # this publisher cannot check the old target.
        return _record_failure(
            post_id, intent["id"],
            f"an unfinished send to {intent['target']!r} cannot be checked through {publisher.channel!r}; "
            "check it and set the post back to 'ready' if it is missing",
            session_factory,
        )
    floor = _message_id_floor(session_factory, intent["target"], intent["created_at"], post_id)
    try:
        found = publisher.find_published(intent["target"], post_id, after_id=floor, since=intent["created_at"])
    except PermanentError as exc:
        return _record_failure(post_id, intent["id"], f"cannot verify an earlier send: {exc}", session_factory)
    except Exception as exc:
        _release(intent["id"], f"verification failed: {type(exc).__name__}: {exc}", session_factory)
        raise
    if found:
        logger.warning("post %s was already sent as %s by a delivery that died before its commit",
                       post_id, found)
        return _finalize(post_id, channel_id, [int(i) for i in found], session_factory=session_factory,
                         publisher=publisher, recovered=True)
    if found is None:
        return _record_failure(
            post_id, intent["id"],
            "a delivery died while sending and the channel could not be checked for the post; "
            "check the channel and set the post back to 'ready' if it is missing",
            session_factory,
        )
    try:
        _wait_for_slot(limiter, post_id)
    except NotSent:
        _release(intent["id"], "waiting for the rate limit (verified: not sent)", session_factory)
        raise
    claim = {"publication_id": intent["id"], "target": intent["target"], "html": intent["text"],
             "refs": refs, "channel_id": channel_id}
    try:
        ids = publisher.send_post(claim["target"], claim["html"], claim["refs"], post_id=post_id)
    except NotSent:
        _release(intent["id"], "send refused (verified: not sent)", session_factory)
        raise
    except PermanentError as exc:
        return _record_failure(post_id, intent["id"], str(exc), session_factory)
    except Exception as exc:
        _release(intent["id"], f"send outcome unknown: {type(exc).__name__}: {exc}", session_factory)
        if isinstance(exc, TransientError):
            raise
        raise TransientError(f"post {post_id}: send outcome unknown ({type(exc).__name__})") from exc
    return _finalize(post_id, channel_id, [int(i) for i in ids], session_factory=session_factory,
                     publisher=publisher, recovered=True)


def _remaining(updated_at: datetime, cutoff: datetime) -> float:
    return max(1.0, (updated_at - cutoff).total_seconds())


def _message_id_floor(session_factory: SessionFactory, target: str, before: datetime,
                      post_id: int) -> int | None:
    """The highest message id this system confirmed in `target` before `before`: any message sent
    for the intent created at `before` has a higher id (Telegram numbers a channel's messages in order)."""
    with session_factory() as session:
        rows = session.scalars(
            select(Publication.message_ids)
            .where(Publication.target == target, Publication.post_id != post_id,
                   Publication.status.in_([PublicationStatus.SENT, PublicationStatus.OUTBOX]),
                   Publication.sent_at < before)
            .order_by(Publication.sent_at.desc())
            .limit(20)
        ).all()
    ids = [int(i) for row in rows for i in (row or [])]
    return max(ids) if ids else None


# --------------------------------------------------------------------------------------------------
# contacts


def send_contact_info(
    user_telegram_id: int,
    post_id: int,
    *,
    session_factory: SessionFactory,
    publisher: Publisher,
    lease_seconds: float = CONTACT_LEASE_SECONDS,
) -> dict[str, Any]:
    """Send post `post_id`'s seller contact to the subscriber with Telegram id `user_telegram_id`.

    Only with an active subscription (``is_active`` and ``ends_at`` in the future), and once per
    (user, post): the unique ContactRequest row is inserted before sending (insert-or-ignore) and
    gets the message id after. Outcomes (``status``): ``sent``, ``already_sent``, ``unknown_user``,
    ``blocked``, ``no_subscription``, ``post_not_found``, ``failed``. Raises TransientError to run again
    later: FloodWait, connection trouble, or another delivery of the same request in flight.
    """
    now = utcnow()
    with session_factory() as session:
        user = session.scalar(select(User).where(User.telegram_id == user_telegram_id))
        if user is None:
            return {"status": "unknown_user", "user_id": user_telegram_id, "post_id": post_id}
        if user.is_blocked:
            return {"status": "blocked", "user_id": user_telegram_id, "post_id": post_id}
        subscription = session.scalar(
            select(Subscription.id).where(
                Subscription.user_id == user.id,
                Subscription.is_active.is_(True),
                Subscription.ends_at > now,
                Subscription.starts_at <= now,
            ).limit(1)
        )
        if subscription is None:
            return {"status": "no_subscription", "user_id": user_telegram_id, "post_id": post_id}
        post = session.get(Post, post_id)
        if post is None:
            return {"status": "post_not_found", "user_id": user_telegram_id, "post_id": post_id}
        user_pk = user.id
        text = render_contact_message(post)

    request_id = _reserve_contact_request(user_pk, post_id, now, session_factory, lease_seconds)
    if isinstance(request_id, dict):
        return {**request_id, "user_id": user_telegram_id, "post_id": post_id}
    try:
        message_id = publisher.send_message(user_telegram_id, text)
    except Exception as exc:
        # Give the request up, whatever happened: the retry (or the user asking again) starts afresh.
        # After an ambiguous failure that may send the contact twice: a duplicate private message is
        # harmless, a lost contact is not. (A worker killed here leaves the row: see the lease.)
        _drop_contact_request(request_id, session_factory)
        if isinstance(exc, PermanentError):
            return {"status": "failed", "user_id": user_telegram_id, "post_id": post_id, "reason": str(exc)}
        raise
    with session_factory() as session, session.begin():
        session.execute(
            update(ContactRequest).where(ContactRequest.id == request_id).values(message_id=int(message_id))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(User).where(User.id == user_pk)
            .values(contact_requests_count=User.contact_requests_count + 1)
            .execution_options(synchronize_session=False)
        )
    return {"status": "sent", "user_id": user_telegram_id, "post_id": post_id, "message_id": int(message_id)}


def _reserve_contact_request(user_pk: int, post_id: int, now: datetime, session_factory: SessionFactory,
                             lease_seconds: float) -> int | dict[str, Any]:
    try:
        with session_factory() as session, session.begin():
            request = ContactRequest(user_id=user_pk, post_id=post_id, requested_at=now)
            session.add(request)
            session.flush()
            return request.id
    except IntegrityError:
        pass
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    with session_factory() as session, session.begin():
        existing = session.scalar(select(ContactRequest).where(ContactRequest.user_id == user_pk,
                                                                ContactRequest.post_id == post_id))
        if existing is None:  # deleted in between (a failed send): let the caller retry
            raise NotSent("contact request changed concurrently", retry_after=1)
        if existing.message_id is not None:
            return {"status": "already_sent", "message_id": existing.message_id}
        taken = session.execute(
            update(ContactRequest)
            .where(ContactRequest.id == existing.id, ContactRequest.message_id.is_(None),
                   ContactRequest.requested_at <= cutoff)
            .values(requested_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken == 1:  # the delivery that reserved it died without sending or giving it up
            return existing.id
        retry_after = _remaining(existing.requested_at, cutoff)
    # Another delivery is sending it now, or died doing so: look again after its lease.
    raise TransientError(f"contact for post {post_id} is being sent by another delivery", retry_after=retry_after)


def _drop_contact_request(request_id: int, session_factory: SessionFactory) -> None:
    with session_factory() as session, session.begin():
        session.execute(delete(ContactRequest).where(ContactRequest.id == request_id,
                                                     ContactRequest.message_id.is_(None)))


def original_post_link(post: Post) -> str | None:
    """The source post's public link: the stored one, else t.me/<channel>/<message id>."""
    if post.link:
        return post.link
    channel = post.channel
    name = (channel.username or "").strip().lstrip("@") if channel is not None else ""
    if name and not name.lstrip("-").isdigit():
        return f"https://t.me/{name}/{post.message_id}"
    return None


def render_contact_message(post: Post) -> str:
    """The private message with the seller's contact and the original post link (Telegram HTML)."""
    import html as _html

    def e(value: Any) -> str:
        return _html.escape(str(value), quote=True)

    car = post.car
    title = " ".join(str(v) for v in (getattr(car, "brand", None), getattr(car, "model", None)) if v)
    year = getattr(car, "year", None)
    lines = ["📞 <b>Контакты продавца</b>"]
    if title:
        lines.append(f"🚗 {e(title[:200])}" + (f", {e(year)}" if year else ""))
    contact = post.contact
    channel = post.channel
    phone = (contact.phone if contact else None) or (channel.seller_phone if channel else None)
    username = (contact.telegram_username if contact else None) or (channel.seller_username if channel else None)
    other = contact.other if contact else None
    if phone:
        lines.append(f"Телефон: {e(phone)}")
    if username:
        lines.append(f"Telegram: @{e(str(username).lstrip('@'))}")
    if other:
        lines.append(f"Другое: {e(other[:500])}")
    if not (phone or username or other):
        lines.append("Продавец не оставил контактов: напишите ему через исходный пост.")
    link = original_post_link(post)
    if link:
        lines.append(f'🔗 <a href="{e(link)}">Оригинальный пост</a>')
    return "\n".join(lines)

