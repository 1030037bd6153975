"""Sending a seller's contact to a subscriber, once per (user, post).

Plain functions over a SQLAlchemy session factory and a publisher (the Telegram adapter or the outbox),
so they run and are tested without a worker.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from cars_bot.db.models import ContactRequest, Post, Subscription, User, utcnow
from cars_bot.errors import PermanentError, TransientError
from cars_bot.publishing.delivery import NotSent, Publisher, SessionFactory, db_now, lease_remaining

#: Seconds a reserved, unsent contact request is presumed to belong to a live delivery
#: (send_contact_info_task's hard limit is 60 s).
CONTACT_LEASE_SECONDS = 90.0


class ContactOutcome(StrEnum):
    """How a send_contact_info call ended (retries are raised as TransientError, never returned)."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    UNKNOWN_USER = "unknown_user"
    BLOCKED = "blocked"
    NO_SUBSCRIPTION = "no_subscription"
    POST_NOT_FOUND = "post_not_found"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ContactResult:
    """The final outcome of one contact request; fields that do not apply to the outcome are None."""

    status: ContactOutcome
    user_id: int  # the subscriber's Telegram id
    post_id: int
    message_id: int | None = None  # sent, already_sent
    reason: str | None = None  # failed


def send_contact_info(
    user_telegram_id: int,
    post_id: int,
    *,
    session_factory: SessionFactory,
    publisher: Publisher,
    lease_seconds: float = CONTACT_LEASE_SECONDS,
) -> ContactResult:
    """Send post `post_id`'s seller contact to the subscriber with Telegram id `user_telegram_id`.

    Only with an active subscription (``is_active`` and ``ends_at`` in the future), and once per
    (user, post): the unique ContactRequest row is inserted before sending (insert-or-ignore) and
    gets the message id after. Raises TransientError to run again later: FloodWait, connection
    trouble, or another delivery of the same request in flight.
    """
    now = utcnow()
    with session_factory() as session:
        user = session.scalar(select(User).where(User.telegram_id == user_telegram_id))
        if user is None:
            return ContactResult(ContactOutcome.UNKNOWN_USER, user_telegram_id, post_id)
        if user.is_blocked:
            return ContactResult(ContactOutcome.BLOCKED, user_telegram_id, post_id)
        subscription = session.scalar(
            select(Subscription.id).where(
                Subscription.user_id == user.id,
                Subscription.is_active.is_(True),
                Subscription.ends_at > now,
                Subscription.starts_at <= now,
            ).limit(1)
        )
        if subscription is None:
            return ContactResult(ContactOutcome.NO_SUBSCRIPTION, user_telegram_id, post_id)
        post = session.get(Post, post_id)
        if post is None:
            return ContactResult(ContactOutcome.POST_NOT_FOUND, user_telegram_id, post_id)
        user_pk = user.id
        text = render_contact_message(post)

    request_id, sent_before = _reserve_contact_request(user_pk, post_id, session_factory, lease_seconds)
    if sent_before is not None:
        return ContactResult(ContactOutcome.ALREADY_SENT, user_telegram_id, post_id, message_id=sent_before)
    try:
        message_id = publisher.send_message(user_telegram_id, text)
    except Exception as exc:
        # Give the request up, whatever happened: the retry (or the user asking again) starts afresh.
        # After an ambiguous failure that may send the contact twice: a duplicate private message is
        # harmless, a lost contact is not. (A worker killed here leaves the row: see the lease.)
        _drop_contact_request(request_id, session_factory)
        if isinstance(exc, PermanentError):
            return ContactResult(ContactOutcome.FAILED, user_telegram_id, post_id, reason=str(exc))
        raise
    message_id = int(message_id)
    with session_factory() as session, session.begin():
        session.execute(
            update(ContactRequest).where(ContactRequest.id == request_id).values(message_id=message_id)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(User).where(User.id == user_pk)
            .values(contact_requests_count=User.contact_requests_count + 1)
            .execution_options(synchronize_session=False)
        )
    return ContactResult(ContactOutcome.SENT, user_telegram_id, post_id, message_id=message_id)


def _reserve_contact_request(user_pk: int, post_id: int, session_factory: SessionFactory,
                             lease_seconds: float) -> tuple[int, int | None]:
    """(request id, None) when this delivery owns the request and must send; (request id, message id)
    when it was sent before. Raises TransientError while another delivery holds it. The lease runs on
    the database server's clock, so workers whose clocks differ agree on it."""
    try:
        with session_factory() as session, session.begin():
            request = ContactRequest(user_id=user_pk, post_id=post_id, requested_at=db_now(session))
            session.add(request)
            session.flush()
            return request.id, None
    except IntegrityError:
        pass
    with session_factory() as session, session.begin():
        now = db_now(session)
        cutoff = now - timedelta(seconds=lease_seconds)
        existing = session.scalar(select(ContactRequest).where(ContactRequest.user_id == user_pk,
                                                                ContactRequest.post_id == post_id))
        if existing is None:  # deleted in between (a failed send): let the caller retry
            raise NotSent("contact request changed concurrently", retry_after=1)
        if existing.message_id is not None:
            return existing.id, existing.message_id
        taken = session.execute(
            update(ContactRequest)
            .where(ContactRequest.id == existing.id, ContactRequest.message_id.is_(None),
                   ContactRequest.requested_at <= cutoff)
            .values(requested_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken == 1:  # the delivery that reserved it died without sending or giving it up
            return existing.id, None
        retry_after = lease_remaining(existing.requested_at, cutoff)
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

    def e(value: object) -> str:
        return html_lib.escape(str(value), quote=True)

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
