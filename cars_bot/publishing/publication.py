"""Publishing a ready post exactly once.

Plain functions over a SQLAlchemy session factory and a publisher (the Telegram adapter or the outbox),
so they run and are tested without a worker.

Exactly-once scheme (prior-system.md section 10, defect 4):

1. **Claim + intent, committed before the send.** One transaction runs
   ``UPDATE posts SET status='publishing' WHERE id=:id AND status='ready'`` (only one delivery can win),
   renders the post and writes the :class:`Publication` intent row (status SENDING, the rendered text,
   the task id, and ``probe_floor``: the highest message id confirmed in the channel so far, which any
   message sent for this intent exceeds). Nothing is sent unless this commit succeeded.
2. **Send**, then **one transaction** marks the publication SENT/OUTBOX with the message ids, the post
   PUBLISHED with ``published_at``, and adds 1 to the channel's ``published_posts``.
3. **A refused send** (FloodWait, nothing reached Telegram: :class:`NotSent`) rolls the claim back
   (post -> ready, intent deleted) and is retried. A permanent error marks both FAILED with the reason.
   A send whose outcome is unknown (connection lost, timeout, the soft time limit) *releases* the intent
   (``error`` set) but keeps its lease, starting it again: the Telegram publisher has discarded its
   client, and a request already on the wire lands within the lease. Only an intent released as
   :data:`VERIFIED_NOT_SENT` may be taken over at once.
4. **Redelivery** finds the post 'publishing' with a SENDING intent. An intent younger than the lease
   (:data:`LEASE_SECONDS`, longer than the task's hard time limit) may belong to a delivery that is
   still sending: wait (:class:`HeldByAnotherDelivery`, which uses up no retry). Otherwise take the intent
   over (a compare-and-set UPDATE, so only one delivery does) and ask the publisher
   ``find_published(channel, post_id, after_id=probe_floor)``: Telegram looks for the post's own deep
   link ``start=contact_<post_id>`` above the floor; the outbox looks for its row. Found: commit step 2
   with those ids, without sending. Definitely absent: send the recorded text, then step 2. Cannot tell
   (a bot with no floor, a channel too busy to scan): mark the post FAILED for a person to check (at
   most once wins over a possible duplicate).

**One clock.** Every timestamp these decisions read (the intent's time, the lease) is the database
server's (:func:`~cars_bot.publishing.delivery.db_now`), and the "already sent?" check compares
Telegram's message ids, never a worker's wall clock: workers whose clocks differ by minutes agree.
5. A post already PUBLISHED returns ``already_published`` without sending.

Steps 2 and 3 are one function, :func:`_send`, whichever way the delivery came to own the intent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel, Post, PostStatus, Publication, PublicationStatus
from cars_bot.errors import PermanentError, TransientError
from cars_bot.publishing.delivery import (
    HeldByAnotherDelivery,
    MediaRef,
    NotSent,
    Publisher,
    RateLimited,
    SessionFactory,
    db_now,
    lease_remaining,
)
from cars_bot.publishing.post_template import MAX_ALBUM_ITEMS, render_post

logger = logging.getLogger("cars_bot.publishing")

#: Seconds an unreleased SENDING intent is presumed to belong to a live delivery. Longer than the hard
#: time limit of publish_post_task (90 s): after it, the delivery that wrote the intent is certainly dead.
LEASE_SECONDS = 120.0
#: How a released intent says that its send was verified not to have happened: only such an intent may
#: be taken over before its lease ends. An intent released after a send of unknown outcome (timeout,
#: cancellation, lost connection) keeps its lease, so a late delivery lands before anyone looks.
VERIFIED_NOT_SENT = "verified not sent: "

Limiter = Callable[[], float]


class PublishOutcome(StrEnum):
    """How a publish_post call ended (retries are raised as TransientError, never returned)."""

    PUBLISHED = "published"
    ALREADY_PUBLISHED = "already_published"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The final outcome of publishing one post; fields that do not apply to the outcome are None."""

    status: PublishOutcome
    post_id: int
    message_ids: list[int] | None = None  # published, already_published
    target: str | None = None  # published: the channel (or "outbox")
    publication: PublicationStatus | None = None  # published: sent or outbox
    recovered: bool | None = None  # published: finished a dead delivery's send
    post_status: str | None = None  # not_ready: the post's status ("missing" when it vanished)
    reason: str | None = None  # failed


@dataclass(frozen=True, slots=True)
class Intent:
    """A committed SENDING publication that this delivery owns: what to send, where, for which channel."""

    publication_id: int
    channel_id: int
    target: str
    html: str
    refs: list[MediaRef]


class ClaimOutcome(StrEnum):
    """What the claim transaction found."""

    CLAIMED = "claimed"  # this delivery committed a fresh intent: send it
    LOST = "lost"  # the post was no longer 'ready': another delivery changed it first
    RESUME = "resume"  # an earlier intent is still open: verify the channel before any send
    SETTLED = "settled"  # a final outcome without sending (delivered before, or the render failed)


@dataclass(frozen=True, slots=True)
class Claim:
    """The claim transaction's answer: the intent to send (CLAIMED) or the final result (SETTLED)."""

    outcome: ClaimOutcome
    intent: Intent | None = None
    result: PublishResult | None = None


def publish_post(
    post_id: int,
    *,
    session_factory: SessionFactory,
    publisher: Publisher,
    limiter: Limiter | None = None,
    task_id: str | None = None,
    bot_username: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> PublishResult:
    """Publish post `post_id` exactly once (see the module docstring) and return the outcome.

    Raises :class:`TransientError` (with ``retry_after``) when the task should run again later: rate
    limit, FloodWait, connection trouble, or another delivery holding the post.
    """
    with session_factory() as session:
        post = session.get(Post, post_id)
        if post is None:
            return PublishResult(PublishOutcome.NOT_FOUND, post_id)
        status = post.status
    if status == PostStatus.PUBLISHED:
        return _already_published(session_factory, post_id)
    if status == PostStatus.PUBLISHING:
        return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=limiter,
                       task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
    if status != PostStatus.READY:
        return PublishResult(PublishOutcome.NOT_READY, post_id, post_status=status.value)

    _wait_for_slot(limiter, post_id)
    claim = _claim(post_id, session_factory=session_factory, publisher=publisher, task_id=task_id,
                   bot_username=bot_username)
    if claim.outcome is ClaimOutcome.LOST:
        # Another delivery changed the post between our read and our claim: look again (once).
        with session_factory() as session:
            post = session.get(Post, post_id)
            status = post.status if post is not None else None
        if status == PostStatus.PUBLISHED:
            return _already_published(session_factory, post_id)
        if status == PostStatus.PUBLISHING:
            return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=None,
                           task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
        return PublishResult(PublishOutcome.NOT_READY, post_id, post_status=status.value if status else "missing")
    if claim.outcome is ClaimOutcome.RESUME:
        return _resume(post_id, session_factory=session_factory, publisher=publisher, limiter=None,
                       task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)
    if claim.result is not None:
        return claim.result
    assert claim.intent is not None  # CLAIMED
    return _send(post_id, claim.intent, session_factory=session_factory, publisher=publisher, resumed=False)


def _wait_for_slot(limiter: Limiter | None, post_id: int) -> None:
    if limiter is None:
        return
    wait = float(limiter())
    if wait > 0:
        raise RateLimited(f"publishing rate limit reached; post {post_id} waits {wait:.1f}s", retry_after=wait)


def _already_published(session_factory: SessionFactory, post_id: int) -> PublishResult:
    with session_factory() as session:
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        ids = list(pub.message_ids) if pub is not None else []
    return PublishResult(PublishOutcome.ALREADY_PUBLISHED, post_id, message_ids=ids)


def media_refs_for(post: Post) -> list[MediaRef]:
    """The source messages whose media the published post re-sends (at most 10, by message id).

    `has_media` follows the actual media (prior defect 8): a text-only post, even with
    ``message_ids=[id]``, has no media refs. Items of ``post.media`` may be dicts naming their own
    ``message_id``/``channel``; otherwise the post's ``message_ids`` (or ``message_id``) are used.
    """
    media = list(post.media or [])
    if not media:
        return []
    source = _source_peer(post.channel) if post.channel is not None else None
    refs: dict[tuple[str, int], MediaRef] = {}
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


def _render(post: Post, publisher: Publisher, bot_username: str | None) -> tuple[str, list[MediaRef]]:
    refs = media_refs_for(post)
    html = render_post(
        post.car, post.summary, post_id=post.id,
        bot_username=bot_username or getattr(publisher, "bot_username", None),
        has_media=bool(refs),
    )
    return html, refs


def _claim(post_id: int, *, session_factory: SessionFactory, publisher: Publisher, task_id: str | None,
           bot_username: str | None) -> Claim:
    """Claim the post and commit the SENDING intent (LOST when another delivery claimed it first)."""
    with session_factory() as session, session.begin():
        # SQLite: the transaction began IMMEDIATE (db.session), so reading the clock first takes the
        # write lock already; a concurrent delivery waits, then sees 'publishing'.
        now = db_now(session)
        claimed = session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == PostStatus.READY)
            .values(status=PostStatus.PUBLISHING, status_reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            return Claim(ClaimOutcome.LOST)
        post = session.get(Post, post_id, populate_existing=True)
        assert post is not None
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        if pub is not None and pub.status == PublicationStatus.SENDING:
            # Set back to 'ready' by hand while an intent was open: the earlier send may have happened.
            # Keep the intent, released, and let _resume verify the channel before any send.
            pub.error = "post was set back to 'ready' while a send was in flight"
            pub.updated_at = now
            return Claim(ClaimOutcome.RESUME)
        if pub is not None and pub.status in (PublicationStatus.SENT, PublicationStatus.OUTBOX):
            # Delivered before and set back to 'ready' by hand: exactly once wins, do not re-post.
            post.status = PostStatus.PUBLISHED
            post.published_at = post.published_at or pub.sent_at or now
            return Claim(ClaimOutcome.SETTLED, result=PublishResult(
                PublishOutcome.ALREADY_PUBLISHED, post_id, message_ids=list(pub.message_ids)))
        try:
            html, refs = _render(post, publisher, bot_username)
        except ValueError as exc:
            post.status = PostStatus.FAILED
            post.status_reason = f"render failed: {exc}"
            return Claim(ClaimOutcome.SETTLED, result=PublishResult(
                PublishOutcome.FAILED, post_id, reason=post.status_reason))
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
        pub.created_at = pub.updated_at = now  # the intent's time, on the database's clock
        pub.probe_floor = _message_id_floor(session, publisher.channel, post_id)
        session.flush()
        return Claim(ClaimOutcome.CLAIMED, intent=Intent(publication_id=pub.id, channel_id=post.channel_id,
                                                         target=publisher.channel, html=html, refs=refs))


def _send(post_id: int, intent: Intent, *, session_factory: SessionFactory, publisher: Publisher,
          resumed: bool) -> PublishResult:
    """Send an intent this delivery owns, classify what happened, and leave the database in the state
    the next delivery expects.

    - Sent: the finishing transaction (:func:`_finalize`).
    - A permanent error: post and publication FAILED with the reason.
    - Refused, nothing sent (:class:`NotSent`): a fresh claim is undone, so the retry claims and renders
      afresh; a `resumed` intent is kept and released instead, so the retry verifies the channel again
      before it sends the recorded text (the intent may predate this delivery: a send in flight when an
      operator set the post back to 'ready').
    - Anything else, or no message id: the outcome is unknown (the request may have reached Telegram).
      The intent is released so the next delivery verifies the channel at once, and a TransientError
      makes sure there is a next delivery.
    """
    try:
        ids = publisher.send_post(intent.target, intent.html, intent.refs, post_id=post_id)
    except PermanentError as exc:
        return _record_failure(post_id, intent.publication_id, str(exc), session_factory)
    except NotSent:
        if resumed:
            _release(intent.publication_id, "send refused", session_factory, verified_not_sent=True)
        else:
            _unclaim(post_id, intent.publication_id, session_factory)
        raise
    except Exception as exc:
        _release(intent.publication_id, f"send outcome unknown: {type(exc).__name__}: {exc}", session_factory)
        if isinstance(exc, TransientError):
            raise
        raise TransientError(f"post {post_id}: send outcome unknown ({type(exc).__name__})") from exc
    ids = [int(i) for i in ids]
    if not ids:
        _release(intent.publication_id, "publisher returned no message id", session_factory)
        raise TransientError(f"post {post_id}: publisher returned no message id")
    return _finalize(post_id, intent.channel_id, ids, session_factory=session_factory, publisher=publisher,
                     recovered=resumed)


def _finalize(post_id: int, channel_id: int, ids: list[int], *, session_factory: SessionFactory,
              publisher: Publisher, recovered: bool) -> PublishResult:
    """The one transaction after a send: publication confirmed, post published, channel counter."""
    peer_id, access_hash = _resolved_peer(publisher)
    with session_factory() as session, session.begin():
        now = db_now(session)
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
                        updated_at=now, peer_id=peer_id, peer_access_hash=access_hash)
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
    return PublishResult(PublishOutcome.PUBLISHED, post_id, message_ids=ids, target=publisher.channel,
                         publication=publisher.publication_status, recovered=recovered)


def _record_failure(post_id: int, publication_id: int, reason: str,
                    session_factory: SessionFactory) -> PublishResult:
    reason = reason[:2000]
    with session_factory() as session, session.begin():
        now = db_now(session)
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
    return PublishResult(PublishOutcome.FAILED, post_id, reason=reason)


def _unclaim(post_id: int, publication_id: int, session_factory: SessionFactory) -> None:
    """Nothing was sent: undo the claim so the retry starts afresh."""
    with session_factory() as session, session.begin():
        now = db_now(session)
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


def _release(publication_id: int, reason: str, session_factory: SessionFactory, *,
             verified_not_sent: bool = False) -> None:
    """Mark an intent as no longer owned by a live delivery. Verified not sent: the next delivery may
    take over at once. Otherwise (the outcome is unknown) the lease starts again now, on the
    database's clock: a send still on its way lands before any delivery verifies the channel."""
    reason = (VERIFIED_NOT_SENT + reason) if verified_not_sent else reason
    try:
        with session_factory() as session, session.begin():
            session.execute(
                update(Publication)
                .where(Publication.id == publication_id, Publication.status == PublicationStatus.SENDING)
                .values(error=reason[:2000], updated_at=db_now(session))
                .execution_options(synchronize_session=False)
            )
    except Exception:  # the lease still expires; the original error matters more
        logger.exception("could not release publication intent %s", publication_id)


@dataclass(frozen=True, slots=True)
class _OpenIntent:
    """A SENDING publication as a redelivery finds it, before taking it over."""

    id: int
    target: str
    text: str
    created_at: datetime
    updated_at: datetime
    released: bool  # verified not sent: may be taken over before the lease ends
    probe_floor: int | None


def _resume(post_id: int, *, session_factory: SessionFactory, publisher: Publisher, limiter: Limiter | None,
            task_id: str | None, bot_username: str | None, lease_seconds: float) -> PublishResult:
    """The post is 'publishing': wait for a live delivery, or verify and finish a dead one's work.

    Every time compared here is the database server's (intent timestamps are written with it too)."""
    with session_factory() as session:
        cutoff = db_now(session) - timedelta(seconds=lease_seconds)
        post = session.get(Post, post_id)
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        if post is None:
            return PublishResult(PublishOutcome.NOT_FOUND, post_id)
        channel_id = post.channel_id
        post_updated = post.updated_at
        refs: list[MediaRef] = []
        if pub is None or pub.status != PublicationStatus.SENDING:
            intent = None
        else:
            intent = _OpenIntent(id=pub.id, target=pub.target, text=pub.text, created_at=pub.created_at,
                                 updated_at=pub.updated_at, probe_floor=pub.probe_floor,
                                 released=(pub.error or "").startswith(VERIFIED_NOT_SENT))
            refs = media_refs_for(post)

    if intent is None:
        # 'publishing' without an open intent: claimed by a delivery that died before its first commit
        # could not happen (claim and intent share a transaction), so this is a hand-edited row or a
        # confirmed publication whose post row was edited. Without an intent nothing was sent.
        if post_updated > cutoff:
            raise HeldByAnotherDelivery(f"post {post_id} is being published by another delivery",
                                        retry_after=lease_remaining(post_updated, cutoff))
        with session_factory() as session, session.begin():
            session.execute(
                update(Post).where(Post.id == post_id, Post.status == PostStatus.PUBLISHING,
                                   Post.updated_at <= cutoff)
                .values(status=PostStatus.READY, updated_at=db_now(session))
                .execution_options(synchronize_session=False)
            )
        return publish_post(post_id, session_factory=session_factory, publisher=publisher, limiter=limiter,
                            task_id=task_id, bot_username=bot_username, lease_seconds=lease_seconds)

    if not intent.released and intent.updated_at > cutoff:
        raise HeldByAnotherDelivery(f"post {post_id} is being published by another delivery",
                                    retry_after=lease_remaining(intent.updated_at, cutoff))

    # Take the intent over: only one delivery passes this compare-and-set.
    with session_factory() as session, session.begin():
        taken = session.execute(
            update(Publication)
            .where(Publication.id == intent.id, Publication.status == PublicationStatus.SENDING,
                   Publication.error.startswith(VERIFIED_NOT_SENT, autoescape=True)
                   | (Publication.updated_at <= cutoff))
            .values(task_id=task_id, error=None, updated_at=db_now(session))
            .execution_options(synchronize_session=False)
        ).rowcount
    if taken != 1:
        raise HeldByAnotherDelivery(f"post {post_id} was taken over by another delivery",
                                    retry_after=lease_seconds)

    if intent.target != publisher.channel:
        # Configuration changed (outbox -> Telegram, or another channel) since the intent was written:
        # this publisher cannot check the old target.
        return _record_failure(
            post_id, intent.id,
            f"an unfinished send to {intent.target!r} cannot be checked through {publisher.channel!r}; "
            "check it and set the post back to 'ready' if it is missing",
            session_factory,
        )
    try:
        found = publisher.find_published(intent.target, post_id, after_id=intent.probe_floor,
                                         since=intent.created_at)
    except PermanentError as exc:
        return _record_failure(post_id, intent.id, f"cannot verify an earlier send: {exc}", session_factory)
    except Exception as exc:
        _release(intent.id, f"verification failed: {type(exc).__name__}: {exc}", session_factory)
        raise
    if found:
        logger.warning("post %s was already sent as %s by a delivery that died before its commit",
                       post_id, found)
        return _finalize(post_id, channel_id, [int(i) for i in found], session_factory=session_factory,
                         publisher=publisher, recovered=True)
    if found is None:
        return _record_failure(
            post_id, intent.id,
            "a delivery died while sending and the channel could not be checked for the post; "
            "check the channel and set the post back to 'ready' if it is missing",
            session_factory,
        )
    try:
        _wait_for_slot(limiter, post_id)
    except NotSent:
        _release(intent.id, "waiting for the rate limit", session_factory, verified_not_sent=True)
        raise
    owned = Intent(publication_id=intent.id, channel_id=channel_id, target=intent.target, html=intent.text,
                   refs=refs)
    return _send(post_id, owned, session_factory=session_factory, publisher=publisher, resumed=True)


def _message_id_floor(session: Session, target: str, post_id: int) -> int | None:
    """The highest message id this system confirmed in `target` so far (read in the claim's
    transaction): a message sent for the intent being committed gets a higher id, because Telegram
    numbers a channel's messages in the order it receives them and every confirmed send happened
    before this commit. No timestamp is involved, so no host's clock can move the floor."""
    rows = session.scalars(
        select(Publication.message_ids)
        .where(Publication.target == target, Publication.post_id != post_id,
               Publication.status.in_([PublicationStatus.SENT, PublicationStatus.OUTBOX]))
        .order_by(Publication.sent_at.desc())
        .limit(50)
    ).all()
    ids = [int(i) for row in rows for i in (row or [])]
    return max(ids) if ids else None


def _resolved_peer(publisher: Publisher) -> tuple[int | None, int | None]:
    """The input peer (id, access hash) the publisher sent to, when it resolved one (Telegram)."""
    peer = getattr(publisher, "resolved_peer", None)
    value = peer(publisher.channel) if callable(peer) else None
    return value if value is not None else (None, None)
