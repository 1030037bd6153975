"""The monitor's database side: which channels to listen to, the peers resolved for them, where each
channel's reading stands. Plain synchronous functions; the monitor runs them in a worker thread so
that its event loop never waits on the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cars_bot.ingest import IngestedPost, Send, ingest_post
from cars_bot.monitor.messages import SourcePost

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cars_bot.db.models import MonitorChannel


@dataclass(frozen=True, slots=True)
class WatchedChannel:
    """An active source channel and what the monitor keeps for it (peer None: not resolved yet)."""

    channel_id: int  # the channels row
    ref: str  # the channel cell: a username, an invite link or a -100 id
    peer_id: int | None
    access_hash: int | None
    last_message_id: int


def active_channels(database_url: str | None = None) -> list[WatchedChannel]:
    """The active channels with their stored peer and position (a peer and position of another cell,
    after the sheet changed, do not count)."""
    from sqlalchemy import select

    from cars_bot.db.models import Channel, MonitorChannel
    from cars_bot.db.session import session_scope
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Channel, MonitorChannel).outerjoin(MonitorChannel, MonitorChannel.channel_id == Channel.id)
            .where(Channel.is_active.is_(True)).order_by(Channel.id)).all()
        watched = []
        for channel, state in rows:
            same = state is not None and state.ref == channel.username
            watched.append(WatchedChannel(
                channel_id=channel.id, ref=channel.username,
                peer_id=state.peer_id if same and state else None,
                access_hash=state.access_hash if same and state else None,
                last_message_id=state.last_message_id if same and state else 0))
        return watched


def _state(session: Session, channel_id: int) -> MonitorChannel:
    from sqlalchemy import select

    from cars_bot.db.models import MonitorChannel

    row = session.scalar(select(MonitorChannel).where(MonitorChannel.channel_id == channel_id))
    if row is None:
        row = MonitorChannel(channel_id=channel_id, last_message_id=0)
        session.add(row)
    return row


def save_peer(channel_id: int, ref: str, peer_id: int, access_hash: int | None,
              database_url: str | None = None) -> None:
    """Remember the peer a channel cell resolved to (and the channel's Telegram id on its row)."""
    from cars_bot.db.models import Channel, utcnow
    from cars_bot.db.session import session_scope

    with session_scope(database_url) as session:
        row = _state(session, channel_id)
        if row.ref != ref:  # another channel now: its position starts afresh
            row.last_message_id, row.last_message_at = 0, None
        row.ref, row.peer_id, row.access_hash = ref, peer_id, access_hash
        row.resolved_at, row.last_error = utcnow(), None
        channel = session.get(Channel, channel_id)
        if channel is not None and channel.telegram_id is None:
            channel.telegram_id = peer_id


def save_error(channel_id: int, error: str, database_url: str | None = None) -> None:
    """Record why a channel could not be resolved or read (shown by `carsctl monitor status`)."""
    from cars_bot.db.session import session_scope

    with session_scope(database_url) as session:
        _state(session, channel_id).last_error = error[:1000]


def _advance(session: Session, channel_id: int, last_id: int, date: datetime | None) -> None:
    row = _state(session, channel_id)
    if last_id > (row.last_message_id or 0):
        row.last_message_id = last_id
        if date is not None:
            row.last_message_at = date


def save_position(channel_id: int, last_id: int, date: datetime | None = None,
                  database_url: str | None = None) -> None:
    """Move a channel's position forward past messages that made no post (never backwards)."""
    from cars_bot.db.session import session_scope

    with session_scope(database_url) as session:
        _advance(session, channel_id, last_id, date)


def store_source_post(channel_id: int, post: SourcePost, link: str, *, send: Send | None = None,
                      database_url: str | None = None) -> IngestedPost:
    """Ingest one post of a channel (the shared ingest: de-duplicated, dispatched once); the channel's
    position moves past it in the transaction that records the dispatch."""
    return ingest_post(channel=channel_id, text=post.text, message_id=post.message_id, media=post.media,
                       message_ids=post.message_ids, media_group_id=post.media_group_id, link=link, dispatch=True,
                       send=send, database_url=database_url,
                       also=lambda session, _row: _advance(session, channel_id, post.last_id, post.date))
