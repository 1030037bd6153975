"""What publishing a post and sending a contact share: the transport interface, the media references a
post re-sends, the "nothing was sent" errors, and the lease arithmetic of an unfinished delivery.

The transports (:mod:`cars_bot.publishing.telegram`, :mod:`cars_bot.publishing.outbox`) import from here
and never from the services, so the services can import the transports' vocabulary without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypedDict

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel, Publication, PublicationStatus
from cars_bot.errors import TransientError

SessionFactory = Callable[[], Session]


class MediaRef(TypedDict):
    """One source message whose media a post re-sends (JSON-shaped: stored as is in ``outbox.media``)."""

    channel: str
    message_id: int


class NotSent(TransientError):
    """The send was refused or never attempted (FloodWait, failure before sending): nothing was posted."""


class Waiting(NotSent):
    """Nothing was sent because the post must wait its turn (not a failure: it uses up no retry)."""


class RateLimited(Waiting):
    """The cluster-wide publishing rate is used up: wait `retry_after` seconds (not a failure)."""


class HeldByAnotherDelivery(Waiting):
    """Another delivery holds the post's intent (its lease runs): look again when it expires."""


class Publisher(Protocol):
    """What the services need from a transport: the Telegram adapter and the outbox both provide it."""

    kind: str  # "telegram" | "outbox"
    channel: str  # the target of channel posts
    bot_username: str | None
    publication_status: PublicationStatus

    def send_post(self, channel: str, html: str, media_refs: list[MediaRef], *,
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


def lease_remaining(taken_at: datetime, cutoff: datetime) -> float:
    """Seconds until a lease taken at `taken_at` expires, given that leases taken before `cutoff` have
    (at least 1 s, so a retry never spins)."""
    return max(1.0, (taken_at - cutoff).total_seconds())


def db_now(session: Session) -> datetime:
    """The database server's current time, timezone-aware UTC: the one clock every lease and every
    intent timestamp uses, so workers whose clocks differ still agree (a worker's wall clock never
    decides whether a send may be in flight). SQLite: ``strftime('%f')`` (milliseconds, UTC);
    elsewhere ``now()`` (PostgreSQL: the transaction's start, timestamptz)."""
    if session.get_bind().dialect.name == "sqlite":
        raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    value = session.execute(select(func.now())).scalar_one()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoredPeers:
    """The input peers (channel id, access hash) of ``-100...`` channels kept in the database: a user
    session resolves one once (its dialogs) and every later process reads it from here. Looked up in
    the latest publication sent to the channel, then in a source channel's row; `remember` writes a
    source channel's row (a target's is written with its publication)."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self.session_factory = session_factory

    @staticmethod
    def _ids(marked_id: int) -> tuple[int, int] | None:
        text_id = str(marked_id)
        return (marked_id, int(text_id[4:])) if text_id.startswith("-100") else None

    def __call__(self, marked_id: int) -> tuple[int, int] | None:
        ids = self._ids(marked_id)
        if ids is None:
            return None
        with self.session_factory() as session:
            access_hash = session.scalar(
                select(Publication.peer_access_hash)
                .where(Publication.peer_id == marked_id, Publication.peer_access_hash.is_not(None))
                .order_by(Publication.id.desc()).limit(1)
            ) or session.scalar(
                select(Channel.access_hash)
                .where(Channel.telegram_id.in_(ids), Channel.access_hash.is_not(None)).limit(1)
            )
        return (ids[1], int(access_hash)) if access_hash is not None else None

    def remember(self, marked_id: int, access_hash: int) -> None:
        ids = self._ids(marked_id)
        if ids is None:
            return
        with self.session_factory() as session, session.begin():
            session.execute(update(Channel).where(Channel.telegram_id.in_(ids)).values(access_hash=access_hash)
                            .execution_options(synchronize_session=False))


def stored_peers(session_factory: SessionFactory) -> StoredPeers:
    """The database's input peers for `session_factory` (see :class:`StoredPeers`)."""
    return StoredPeers(session_factory)
