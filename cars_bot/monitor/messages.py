"""From Telegram messages to posts: which messages count, and an album as one post.

A message counts when it is an ordinary message (not a service message: joins, pins, title changes)
with text or media (a photo or a document: video, GIF, file). Link previews, polls and the like are
not media here: a text with a link preview is a text-only post, so that a post's `media` always
follows the actual media (prior-system.md section 10, defect 8). An album (`grouped_id`) is one post
with every item's media, its text taken from the item that carries the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message that counts: its id, text, media (None for text only) and album."""

    message_id: int
    text: str
    media: dict[str, Any] | None  # {"type": "photo"|"document", "id": ...}
    grouped_id: int | None
    date: datetime | None


@dataclass(frozen=True, slots=True)
class SourcePost:
    """One post made of one message, or of an album's messages (ids ascending)."""

    message_id: int  # the first message's id: the post's key with the channel
    text: str
    media: list[dict[str, Any]]  # each names its message and channel (what the publisher re-sends)
    message_ids: list[int]  # the messages holding media ([] for a text-only post)
    media_group_id: int | None
    date: datetime | None
    last_id: int  # the highest message id it covers (the channel position after it)


def message_channel_id(message: Any) -> int | None:
    """The bare channel id a message was posted in (None outside channels)."""
    peer = getattr(message, "peer_id", None)
    return getattr(peer, "channel_id", None)


def incoming(message: Any) -> Incoming | None:
    """The message as a post's part, or None when it does not count (service, empty, deleted)."""
    from telethon.tl.types import Message

    if type(message) is not Message:  # MessageService, MessageEmpty
        return None
    text = (message.message or "").strip()
    media = _media(message.media)
    if not text and media is None:
        return None
    return Incoming(message_id=message.id, text=text, media=media, grouped_id=message.grouped_id,
                    date=message.date)


def _media(media: Any) -> dict[str, Any] | None:
    from telethon.tl.types import MessageMediaDocument, MessageMediaPhoto

    if isinstance(media, MessageMediaPhoto) and media.photo is not None:
        return {"type": "photo", "id": getattr(media.photo, "id", None)}
    if isinstance(media, MessageMediaDocument) and media.document is not None:
        return {"type": "document", "id": getattr(media.document, "id", None),
                "mime_type": getattr(media.document, "mime_type", None)}
    return None


def source_post(parts: Sequence[Incoming], source: str) -> SourcePost:
    """One post from a message or an album's messages; `source` is the channel as the publisher
    names it (`@name` or `-100...`), recorded in every media item."""
    ordered = sorted({p.message_id: p for p in parts}.values(), key=lambda p: p.message_id)
    first = ordered[0]
    captioned = next((p for p in ordered if p.text), first)
    with_media = [p for p in ordered if p.media is not None]
    return SourcePost(
        message_id=first.message_id, text=captioned.text,
        media=[{**(p.media or {}), "message_id": p.message_id, "channel": source} for p in with_media],
        message_ids=[p.message_id for p in with_media],
        media_group_id=first.grouped_id,
        date=first.date, last_id=ordered[-1].message_id)
