"""SQLAlchemy 2.0 typed models of the domain.

Conventions that fix defects of the prior system (prior-system.md section 10):
- every timestamp is timezone-aware UTC (`UTCDateTime`, also on SQLite, which stores no zone);
- enums are persisted by their lowercase *values* as VARCHAR with a CHECK constraint, identical on
  SQLite and PostgreSQL, so how the database was created never changes what an insert sends;
- a post has an explicit status lifecycle instead of nullable booleans;
- publications are one row per post (unique), which makes publishing idempotent.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only clock the domain uses)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware.

    Naive datetimes are refused: they were the source of the prior system's local/UTC mix-ups.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use cars_bot.db.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps no zone; we only ever wrote UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def value_enum(enum_cls: type[enum.Enum], name: str) -> SAEnum:
    """Persist an enum by its values (lowercase strings), never by member names."""
    return SAEnum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class PostStatus(enum.StrEnum):
    """Lifecycle: new -> processing -> rejected | ready -> publishing -> published | failed."""

    NEW = "new"
    PROCESSING = "processing"
    REJECTED = "rejected"
    READY = "ready"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # a repost of an ad already published (see cars_bot.duplicates)
    PENDING = "pending"  # MODERATION=manual: waits for an admin's APPROVED/REJECTED in the sheet


class Transmission(enum.StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"
    ROBOT = "robot"
    VARIATOR = "variator"


class Fuel(enum.StrEnum):
    PETROL = "petrol"
    DIESEL = "diesel"
    HYBRID = "hybrid"
    ELECTRIC = "electric"
    GAS = "gas"


class AutotekaStatus(enum.StrEnum):
    GREEN = "green"
    HAS_ACCIDENTS = "has_accidents"
    UNKNOWN = "unknown"


class SubscriptionType(enum.StrEnum):
    FREE = "free"
    MONTHLY = "monthly"
    YEARLY = "yearly"


class PublicationStatus(enum.StrEnum):
    """An intent row is written as SENDING before the send; SENT/OUTBOX after it is confirmed."""

    SENDING = "sending"
    SENT = "sent"
    OUTBOX = "outbox"
    FAILED = "failed"


class FailedTaskStatus(enum.StrEnum):
    FAILED = "failed"
    RETRIED = "retried"


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class Channel(TimestampMixin, Base):
    """A source channel watched by the monitor (the sheet's "Каналы для мониторинга")."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)  # without "@", lowercase
    title: Mapped[str | None] = mapped_column(String(255))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    # The channel's input peer for a user session (a StringSession caches no entities): resolved once
    access_hash: Mapped[int | None] = mapped_column(BigInteger)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    seller_phone: Mapped[str | None] = mapped_column(String(32))
    seller_username: Mapped[str | None] = mapped_column(String(255))
    total_posts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    published_posts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)

    posts: Mapped[list[Post]] = relationship(back_populates="channel", cascade="all, delete-orphan")

    __table_args__ = (Index("ix_channels_active", "is_active"),)


class Post(TimestampMixin, Base):
    """A post found in a source channel, and where it is in the pipeline."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigInteger)
    link: Mapped[str | None] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text, default="", nullable=False)
    text_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    media: Mapped[list[Any]] = mapped_column(JSON, default=list, nullable=False)
    message_ids: Mapped[list[int]] = mapped_column(JSON, default=list, nullable=False)
    media_group_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[PostStatus] = mapped_column(
        value_enum(PostStatus, "post_status"), default=PostStatus.NEW, nullable=False
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    # The task id that claimed the post for processing: a redelivered message (same id) may resume
    # the claim after a worker crash, a duplicate enqueue (another id) may not.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    is_sale: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str | None] = mapped_column(Text)
    ai_backend: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last dispatch of process_post_task (its task id and when it was sent): a recovery tells
    # "never sent" (None) from "sent but lost" and "still running" by these.
    dispatch_task_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A repost of an ad already published: the first post of that ad (status `duplicate`).
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"), index=True)
    # Stored with `--no-process`: no dispatch is expected, so recovery leaves the post alone until
    # someone dispatches it (an import with processing clears the flag).
    processing_held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(),
                                                  nullable=False)

    channel: Mapped[Channel] = relationship(back_populates="posts")
    car: Mapped[CarData | None] = relationship(back_populates="post", cascade="all, delete-orphan")
    contact: Mapped[SellerContact | None] = relationship(
        back_populates="post", cascade="all, delete-orphan"
    )
    publication: Mapped[Publication | None] = relationship(
        back_populates="post", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("channel_id", "message_id", name="uq_posts_channel_message"),
        Index("ix_posts_status", "status"),
        Index("ix_posts_found_at", "found_at"),
    )


class CarData(Base):
    """Structured data extracted from a sale post (one row per post)."""

    __tablename__ = "car_data"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    brand: Mapped[str | None] = mapped_column(String(100), index=True)
    model: Mapped[str | None] = mapped_column(String(100))
    year: Mapped[int | None] = mapped_column(Integer)
    price: Mapped[int | None] = mapped_column(BigInteger)
    mileage: Mapped[int | None] = mapped_column(Integer)
    engine_volume: Mapped[str | None] = mapped_column(String(20))
    transmission: Mapped[Transmission | None] = mapped_column(value_enum(Transmission, "transmission"))
    fuel: Mapped[Fuel | None] = mapped_column(value_enum(Fuel, "fuel"))
    owners: Mapped[int | None] = mapped_column(Integer)
    city: Mapped[str | None] = mapped_column(String(100))
    equipment: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[str | None] = mapped_column(Text)
    autoteka_status: Mapped[AutotekaStatus] = mapped_column(
        value_enum(AutotekaStatus, "autoteka_status"), default=AutotekaStatus.UNKNOWN, nullable=False
    )
    market_price: Mapped[int | None] = mapped_column(BigInteger)
    price_justification: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    post: Mapped[Post] = relationship(back_populates="car")


class SellerContact(Base):
    """The seller's contact for a post, taken from the channel's sheet row (not from the text)."""

    __tablename__ = "seller_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    telegram_username: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))
    other: Mapped[str | None] = mapped_column(Text)

    post: Mapped[Post] = relationship(back_populates="contact")


class User(TimestampMixin, Base):
    """A bot user / subscriber."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(255), default="", nullable=False)
    last_name: Mapped[str | None] = mapped_column(String(255))
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    contact_requests_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Subscription(TimestampMixin, Base):
    """A paid (or free) subscription period; the database is the source of truth for expiry."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[SubscriptionType] = mapped_column(
        value_enum(SubscriptionType, "subscription_type"), nullable=False
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="subscriptions")

    __table_args__ = (Index("ix_subscriptions_active_ends", "is_active", "ends_at"),)


class ContactRequest(Base):
    """A subscriber received a seller's contact for a post (once per user and post)."""

    __tablename__ = "contact_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    message_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("user_id", "post_id", name="uq_contact_requests_user_post"),)


class Publication(TimestampMixin, Base):
    """One publication per post: the intent row written before sending, confirmed after."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    status: Mapped[PublicationStatus] = mapped_column(
        value_enum(PublicationStatus, "publication_status"), nullable=False
    )
    target: Mapped[str] = mapped_column(String(255))  # channel, or "outbox"
    text: Mapped[str] = mapped_column(Text)
    message_ids: Mapped[list[int]] = mapped_column(JSON, default=list, nullable=False)
    task_id: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # The highest message id confirmed in `target` when the intent was committed: a message sent for
    # this intent has a higher id (Telegram's own order; no host clock involved). None: none known.
    probe_floor: Mapped[int | None] = mapped_column(BigInteger)
    # The input peer `target` resolved to (a user session needs the access hash of a -100... channel)
    peer_id: Mapped[int | None] = mapped_column(BigInteger)
    peer_access_hash: Mapped[int | None] = mapped_column(BigInteger)

    post: Mapped[Post] = relationship(back_populates="publication")


class AIUsage(Base):
    """Tokens and cost of one AI call (real usage from the API response)."""

    __tablename__ = "ai_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    text_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class AnalysisCache(Base):
    """AI results by normalised text hash: a repost in three channels costs one request."""

    __tablename__ = "analysis_cache"

    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    backend: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class StatsSnapshot(Base):
    """What collect_stats_task measured, persisted (not only in the result backend)."""

    __tablename__ = "stats_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class FailedTask(Base):
    """A task that failed permanently or exhausted its retries, kept so it can be re-run."""

    __tablename__ = "failed_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    task_name: Mapped[str] = mapped_column(String(255))
    args: Mapped[list[Any]] = mapped_column(JSON, default=list, nullable=False)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    queue: Mapped[str | None] = mapped_column(String(64))
    exception: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)
    status: Mapped[FailedTaskStatus] = mapped_column(
        value_enum(FailedTaskStatus, "failed_task_status"),
        default=FailedTaskStatus.FAILED,
        nullable=False,
    )
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retry_task_id: Mapped[str | None] = mapped_column(String(64))


class OutboxMessage(Base):
    """A post 'published' to the outbox (Telegram not configured): what would have been sent."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32), default="post")  # post | contact
    recipient: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    media: Mapped[list[Any]] = mapped_column(JSON, default=list, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class MonitorChannel(Base):
    """The monitor's own state for one source channel: the peer it resolved once (no lookup per
    message) and the last message it has seen (where a catch-up starts)."""

    __tablename__ = "monitor_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    ref: Mapped[str | None] = mapped_column(String(512))  # the channel cell the peer was resolved from
    peer_id: Mapped[int | None] = mapped_column(BigInteger)  # the channel's Telegram id (without -100)
    access_hash: Mapped[int | None] = mapped_column(BigInteger)
    last_message_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", nullable=False)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("channel_id", name="uq_monitor_channels_channel"),)


class SheetFilter(Base):
    """One filter value read from the sheet "Настройки фильтров" (`attr` is its Settings field).

    `value` is the last value that parsed (JSON; None: the cell is blank, so the environment applies);
    `error` says why the cell's current text (`raw`) was not taken: the previous value is kept."""

    __tablename__ = "sheet_filters"

    attr: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    raw: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


class SheetSync(Base):
    """The last sync of one worksheet, for `carsctl sheets status`."""

    __tablename__ = "sheet_syncs"

    worksheet: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the last one that succeeded
    last_error: Mapped[str | None] = mapped_column(Text)  # None once a later sync succeeded
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
