"""Storing posts as the monitor service does: de-duplicated by (channel, message id)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cars_bot.ai.text import text_hash
from cars_bot.db.models import Channel, Post


def channel_username(channel: str) -> str:
    """`@Cars_MSK`, `https://t.me/cars_msk`, `t.me/cars_msk/12` -> `cars_msk`."""
    name = channel.strip()
    for prefix in ("https://", "http://"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("t.me/").removeprefix("telegram.me/").lstrip("@")
    return name.split("/", 1)[0].lower()


def get_or_create_channel(session: Session, channel: str) -> Channel:
    username = channel_username(channel)
    if not username:
        raise ValueError("a channel name is required, e.g. @cars_msk")
    row = session.scalar(select(Channel).where(Channel.username == username))
    if row is None:
        row = Channel(username=username, title=None, is_active=True)
        session.add(row)
        session.flush()
    return row


def store_post(session: Session, *, channel: str, text: str, message_id: int | None = None,
               link: str | None = None, media: list[Any] | None = None,
               message_ids: list[int] | None = None, media_group_id: int | None = None) -> tuple[Post, bool]:
    """Insert a post unless (channel, message id) is already stored; returns (post, created).

    Without a message id (a post added by hand) the channel's next free id is used. `message_ids`
    lists the source messages holding media; a text-only post has none (prior defect 8).
    """
    row = get_or_create_channel(session, channel)
    if message_id is None:
        message_id = (session.scalar(select(func.max(Post.message_id)).where(Post.channel_id == row.id)) or 0) + 1
    existing = session.scalar(select(Post).where(Post.channel_id == row.id, Post.message_id == message_id))
    if existing is not None:
        return existing, False
    post = Post(channel_id=row.id, message_id=message_id, text=text, text_hash=text_hash(text),
                link=link or f"https://t.me/{row.username}/{message_id}", media=list(media or []),
                message_ids=list(message_ids or []), media_group_id=media_group_id)
    try:
        with session.begin_nested():
            session.add(post)
            row.total_posts += 1
    except IntegrityError:  # stored by a concurrent writer a moment ago
        existing = session.scalar(select(Post).where(Post.channel_id == row.id, Post.message_id == message_id))
        assert existing is not None
        return existing, False
    return post, True


def read_jsonl(path: Path | str, lines: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records of a JSON-lines file: {"channel", "text", optional "message_id", "link", "media", ...}.

    Raises ValueError naming the line of a malformed record.
    """
    source = lines if lines is not None else Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not record.get("channel") or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{number}: each line needs \"channel\" and \"text\"")
        yield record


POST_FIELDS = ("channel", "text", "message_id", "link", "media", "message_ids", "media_group_id")


def import_records(session: Session, records: Iterable[dict[str, Any]]) -> list[tuple[int, bool]]:
    """Store every record; returns (post id, created) per record."""
    stored = []
    for record in records:
        post, created = store_post(session, **{k: record[k] for k in POST_FIELDS if k in record})
        stored.append((post.id, created))
    return stored


def sample_posts_path() -> Path:
    """The small sample of posts shipped with the package (used by `carsctl demo`)."""
    return Path(__file__).with_name("data") / "sample_posts.jsonl"
