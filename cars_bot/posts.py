"""Posts: stored as the monitor service does (de-duplicated by channel and message id), and read back
for operators (one post described, the newest listed, the status of several polled) as typed values,
so that no caller outside the domain queries the tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cars_bot.ai.text import text_hash
from cars_bot.db.models import (
    AutotekaStatus,
    CarData,
    Channel,
    Fuel,
    Post,
    PostStatus,
    PublicationStatus,
    SellerContact,
    Transmission,
    utcnow,
)

#: The pipeline is done with the post and it went as designed: published, rejected as not a sale,
#: recognised as a repost of an ad already published, or (MODERATION=manual) waiting for an admin.
DONE_STATUSES = frozenset({PostStatus.PUBLISHED, PostStatus.REJECTED, PostStatus.DUPLICATE, PostStatus.PENDING})
#: Nothing more will happen to the post on its own.
FINAL_STATUSES = DONE_STATUSES | {PostStatus.FAILED}
#: Telegram's limit on a message's text. A longer post is cut to it when stored, with the reason in its
#: status_reason, so that no post can hold the AI pipeline past its time limit.
MAX_STORED_TEXT = 4096


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
               message_ids: list[int] | None = None, media_group_id: int | None = None,
               processing_held: bool = False) -> tuple[Post, bool]:
    """Insert a post unless (channel, message id) is already stored; returns (post, created).

    `processing_held` marks a post stored without processing (`--no-process`): recovery leaves it alone.

    Without a message id (a post added by hand) the channel's next free id is used. `message_ids`
    lists the source messages holding media; a text-only post has none (prior defect 8).
    """
    return store_channel_post(session, get_or_create_channel(session, channel), text=text, message_id=message_id,
                              link=link, media=media, message_ids=message_ids, media_group_id=media_group_id,
                              processing_held=processing_held)


def store_channel_post(session: Session, row: Channel, *, text: str, message_id: int | None = None,
                       link: str | None = None, media: list[Any] | None = None, message_ids: list[int] | None = None,
                       media_group_id: int | None = None, processing_held: bool = False) -> tuple[Post, bool]:
    """`store_post` for a channel row already in hand (the monitor's channels, invite links included)."""
    if message_id is None:
        message_id = (session.scalar(select(func.max(Post.message_id)).where(Post.channel_id == row.id)) or 0) + 1
    existing = session.scalar(select(Post).where(Post.channel_id == row.id, Post.message_id == message_id))
    if existing is not None:
        return existing, False
    reason = None
    if len(text) > MAX_STORED_TEXT:
        reason = f"text cut to {MAX_STORED_TEXT} of its {len(text)} characters at ingest (Telegram's message limit)"
        text = text[:MAX_STORED_TEXT]
    post = Post(channel_id=row.id, message_id=message_id, text=text, text_hash=text_hash(text),
                link=link or f"https://t.me/{row.username}/{message_id}", media=list(media or []),
                message_ids=list(message_ids or []), media_group_id=media_group_id, status_reason=reason,
                processing_held=processing_held)
    if row.seller_phone or row.seller_username:  # the seller contact from the channel's sheet row
        post.contact = SellerContact(phone=row.seller_phone, telegram_username=row.seller_username)
    try:
        with session.begin_nested():
            session.add(post)
            row.total_posts += 1
    except IntegrityError:  # stored by a concurrent writer a moment ago
        existing = session.scalar(select(Post).where(Post.channel_id == row.id, Post.message_id == message_id))
        assert existing is not None
        return existing, False
    return post, True


def read_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file, each checked against the one schema (`cars_bot.post_input`).

    Raises PostInputError (a ValueError) naming the first invalid line.
    """
    from cars_bot.post_input import PostInputError, parse_post_lines

    parsed = parse_post_lines(Path(path).read_bytes())
    if parsed.invalid:
        bad = parsed.invalid[0]
        raise PostInputError(f"{path}:{bad.line}: {bad.reason}")
    for post in parsed.posts:
        yield post.model_dump(exclude_none=True)


POST_FIELDS = ("channel", "text", "message_id", "link", "media", "message_ids", "media_group_id")


def import_records(session: Session, records: Iterable[dict[str, Any]],
                   processing_held: bool = False) -> list[tuple[int, bool]]:
    """Store every record; returns (post id, created) per record."""
    stored = []
    for record in records:
        post, created = store_post(session, **{k: record[k] for k in POST_FIELDS if k in record},
                                   processing_held=processing_held)
        stored.append((post.id, created))
    return stored


def awaiting_dispatch(session: Session, post_ids: Iterable[int], in_flight: Iterable[int]) -> list[int]:
    """Of these posts, those still `new` whose processing message is not in the broker (`in_flight`):
    never dispatched, dispatched but lost, or held by `--no-process`. In the order given."""
    wanted = list(dict.fromkeys(post_ids))
    flying = set(in_flight)
    new: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        new.update(session.scalars(select(Post.id).where(Post.id.in_(chunk), Post.status == PostStatus.NEW)))
    return [post_id for post_id in wanted if post_id in new and post_id not in flying]


def record_dispatches(session: Session, dispatches: Iterable[tuple[int, str]], now: datetime | None = None) -> int:
    """Remember that process_post_task was sent for each (post id, task id), and when; returns how many.

    A dispatched post is no longer held (`--no-process`): from now on recovery watches it.
    """
    moment = now or utcnow()
    rows = [{"id": post_id, "dispatch_task_id": task_id, "dispatched_at": moment, "processing_held": False}
            for post_id, task_id in dispatches]
    if rows:
        session.execute(update(Post), rows)
    return len(rows)


def sample_posts_path() -> Path:
    """The small sample of posts shipped with the package (used by `carsctl demo`)."""
    return Path(__file__).with_name("data") / "sample_posts.jsonl"


@dataclass(frozen=True, slots=True)
class CarDescription:
    """The car data extracted from a post."""

    brand: str | None
    model: str | None
    year: int | None
    price: int | None
    mileage: int | None
    engine_volume: str | None
    transmission: Transmission | None
    fuel: Fuel | None
    owners: int | None
    city: str | None
    autoteka_status: AutotekaStatus
    market_price: int | None
    equipment: str | None


@dataclass(frozen=True, slots=True)
class PublicationDescription:
    """What was published for a post, and where (a channel, or "outbox")."""

    status: PublicationStatus
    target: str
    message_ids: list[int]
    sent_at: datetime | None
    text: str


@dataclass(frozen=True, slots=True)
class PostDescription:
    """Everything known about one post: status, classification, car data, publication."""

    id: int
    channel: str
    message_id: int
    link: str | None
    status: PostStatus
    reason: str | None
    duplicate_of: int | None  # status `duplicate`: the first post of the same ad
    duplicate_of_link: str | None
    is_sale: bool | None
    confidence: float | None
    backend: str | None
    backend_reason: str | None  # why the rules analysed it when OpenAI is configured (a fallback)
    summary: str | None
    found_at: datetime
    processed_at: datetime | None
    published_at: datetime | None
    dispatch_task_id: str | None  # the last process_post_task sent for it (None: never sent)
    dispatched_at: datetime | None
    processing_held: bool  # stored with --no-process: recovery leaves it alone
    text: str
    car: CarDescription | None
    publication: PublicationDescription | None


@dataclass(frozen=True, slots=True)
class PostRow:
    """One line of a post listing: status and the car in brief."""

    id: int
    channel: str
    status: PostStatus
    reason: str | None
    brand: str | None
    model: str | None
    year: int | None
    price: int | None


def describe_post(session: Session, post_id: int) -> PostDescription | None:
    """One post with its car data and publication; None if there is no such post."""
    post = session.get(Post, post_id)
    if post is None:
        return None
    car, publication = post.car, post.publication
    original = session.get(Post, post.duplicate_of) if post.duplicate_of is not None else None
    return PostDescription(
        id=post.id, channel=post.channel.username, message_id=post.message_id, link=post.link,
        status=post.status, reason=post.status_reason, duplicate_of=post.duplicate_of,
        duplicate_of_link=original.link if original is not None else None, is_sale=post.is_sale,
        confidence=post.confidence, backend=post.ai_backend, backend_reason=_fallback_reason(session, post.id),
        summary=post.summary, found_at=post.found_at, processed_at=post.processed_at,
        published_at=post.published_at, dispatch_task_id=post.dispatch_task_id, dispatched_at=post.dispatched_at,
        processing_held=post.processing_held, text=post.text,
        car=None if car is None else CarDescription(
            brand=car.brand, model=car.model, year=car.year, price=car.price, mileage=car.mileage,
            engine_volume=car.engine_volume, transmission=car.transmission, fuel=car.fuel, owners=car.owners,
            city=car.city, autoteka_status=car.autoteka_status, market_price=car.market_price,
            equipment=car.equipment),
        publication=None if publication is None else PublicationDescription(
            status=publication.status, target=publication.target, message_ids=list(publication.message_ids),
            sent_at=publication.sent_at, text=publication.text),
    )


def _fallback_reason(session: Session, post_id: int) -> str | None:
    from cars_bot.ai.fallbacks import post_fallback_reason

    reason = post_fallback_reason(session, post_id)
    return None if reason is None else reason.text


def parse_status(text: str) -> PostStatus:
    """A post status from its name; ValueError listing the valid ones."""
    try:
        return PostStatus(text)
    except ValueError:
        raise ValueError(f"unknown status {text!r}: use one of {', '.join(s.value for s in PostStatus)}") from None


def list_posts(session: Session, status: PostStatus | None = None, limit: int = 20) -> list[PostRow]:
    """The newest posts first, optionally only those of one status."""
    query = (select(Post.id, Channel.username, Post.status, Post.status_reason, CarData.brand, CarData.model,
                    CarData.year, CarData.price)
             .join(Channel, Post.channel_id == Channel.id).outerjoin(CarData, CarData.post_id == Post.id)
             .order_by(Post.id.desc()).limit(limit))
    if status is not None:
        query = query.where(Post.status == status)
    return [PostRow(id=r.id, channel=r.username, status=r.status, reason=r.status_reason, brand=r.brand,
                    model=r.model, year=r.year, price=r.price) for r in session.execute(query)]


def post_statuses(session: Session, post_ids: Iterable[int]) -> dict[int, PostStatus]:
    """The current status of each of these posts (ids that do not exist are left out)."""
    query = select(Post.id, Post.status).where(Post.id.in_(list(post_ids)))
    return {post_id: status for post_id, status in session.execute(query)}
