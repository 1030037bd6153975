"""Fixtures of the publishing tests: a fake telethon transport, posts in the test database, settings."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.models import (
    AutotekaStatus,
    CarData,
    Channel,
    Post,
    PostStatus,
    SellerContact,
    Subscription,
    SubscriptionType,
    Transmission,
    User,
    utcnow,
)


class FakeMessage:
    """What telethon returns for a message: `message` is the visible text, links live in entities."""

    def __init__(self, id: int, html_text: str = "", *, media: Any = None, grouped_id: int | None = None,
                 date: datetime | None = None) -> None:
        from telethon.extensions import html

        self.id = id
        self.message, self.entities = html.parse(html_text) if html_text else ("", [])
        self.media = media
        self.grouped_id = grouped_id
        self.date = date or datetime.now(UTC)


class FakeTelegramClient:
    """The transport fake: telethon's coroutine methods over an in-memory set of channels.

    `fail_next` holds exceptions (real telethon error classes) raised by the next send calls;
    `after_send` is called after each successful send (used to simulate a crash before the commit).
    """

    def __init__(self) -> None:
        self.channels: dict[Any, dict[int, FakeMessage]] = {}
        self.sends: list[dict[str, Any]] = []
        self.fail_next: list[BaseException] = []
        self.after_send: Callable[[], None] | None = None
        self.send_delay = 0.0
        self._ids = itertools.count(1000)
        self.get_calls = 0

    def add_source(self, peer: Any, message: FakeMessage) -> None:
        self.channels.setdefault(peer, {})[message.id] = message

    async def _before_send(self) -> None:
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _sent(self, kind: str, peer: Any, payload: Any, ids: list[int]) -> None:
        self.sends.append({"kind": kind, "peer": peer, "payload": payload, "ids": ids})
        if self.after_send is not None:
            self.after_send()

    async def send_message(self, peer: Any, text: str, *, parse_mode: str | None = None,
                           link_preview: bool = True) -> FakeMessage:
        await self._before_send()
        assert parse_mode == "html"
        assert link_preview is False
        message = FakeMessage(next(self._ids), text)
        self.channels.setdefault(peer, {})[message.id] = message
        self._sent("text", peer, text, [message.id])
        return message

    async def send_file(self, peer: Any, file: Any, *, caption: str = "", parse_mode: str | None = None) -> Any:
        await self._before_send()
        assert parse_mode == "html"
        files = file if isinstance(file, list) else [file]
        assert len(files) <= 10
        group = next(self._ids) if isinstance(file, list) else None
        messages = []
        for index, media in enumerate(files):
            message = FakeMessage(next(self._ids), caption if index == 0 else "", media=media, grouped_id=group)
            self.channels.setdefault(peer, {})[message.id] = message
            messages.append(message)
        self._sent("album" if isinstance(file, list) else "media", peer, caption, [m.id for m in messages])
        return messages if isinstance(file, list) else messages[0]

    async def get_messages(self, peer: Any, limit: int | None = None, *, ids: Any = None,
                           offset_id: int = 0) -> list[Any]:
        self.get_calls += 1
        messages = self.channels.get(peer, {})
        if ids is not None:
            return [messages.get(i) for i in ids]
        newest_first = sorted((m for m in messages.values() if not offset_id or m.id < offset_id),
                              key=lambda m: m.id, reverse=True)
        return newest_first[: limit or 100]


def photo(n: int) -> Any:
    from telethon.tl import types

    return types.MessageMediaPhoto(photo=types.PhotoEmpty(id=n))


def telegram_settings(**overrides: Any) -> SimpleNamespace:
    values = {
        "telegram_channel": "@cars_news", "telegram_bot_username": "cars_bot",
        "telegram_session_string": "session", "telegram_api_id": 1, "telegram_api_hash": "hash",
        "telegram_bot_token": None,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture
def fake_client() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest.fixture
def telegram_publisher(fake_client: FakeTelegramClient) -> Any:
    from cars_bot.publishing.telegram import TelegramPublisher

    return TelegramPublisher(telegram_settings(), client=fake_client, call_timeout=5)


@pytest.fixture
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> sessionmaker[Session]:
    """A session factory on an empty database, whose next commit can be made to crash.

    With TEST_DATABASE_URL (PostgreSQL in CI) the session's migrated database (`db`); otherwise a
    SQLite file of this test's own, created from the models (independent of migrations in progress).
    """
    if os.environ.get("TEST_DATABASE_URL"):
        engine = request.getfixturevalue("db").kw["bind"]
    else:
        from cars_bot.db.models import Base
        from cars_bot.db.session import get_engine

        engine = get_engine(f"sqlite:///{tmp_path / 'publishing.sqlite3'}")
        Base.metadata.create_all(engine)
        request.addfinalizer(engine.dispose)
    crashing = sessionmaker(bind=engine, expire_on_commit=False)
    crashing.crash_next_commit = False  # type: ignore[attr-defined]

    @event.listens_for(crashing, "before_commit")
    def _crash(session: Session) -> None:
        if crashing.crash_next_commit:  # type: ignore[attr-defined]
            crashing.crash_next_commit = False  # type: ignore[attr-defined]
            raise RuntimeError("worker killed between the send and the commit")

    return crashing


def make_post(factory: sessionmaker[Session], *, status: PostStatus = PostStatus.READY, media: list[Any] | None = None,
              message_ids: list[int] | None = None, message_id: int = 1, summary: str | None = "Полная комплектация",
              **car: Any) -> int:
    """A source channel (once) and a post with car data; returns the post id."""
    car_values = {"brand": "BMW", "model": "3 серии", "year": 2015, "price": 850_000, "mileage": 150_000,
                  "engine_volume": "2.5", "transmission": Transmission.AUTOMATIC, "owners": 2,
                  "autoteka_status": AutotekaStatus.GREEN}
    car_values.update(car)
    with factory() as session, session.begin():
        channel = session.query(Channel).filter_by(username="source_cars").one_or_none()
        if channel is None:
            channel = Channel(username="source_cars", title="Source", seller_phone="+79990001122",
                              seller_username="seller_one")
            session.add(channel)
            session.flush()
        post = Post(channel_id=channel.id, message_id=message_id, text="Продам BMW", status=status,
                    media=media or [], message_ids=message_ids or [message_id], summary=summary)
        session.add(post)
        session.flush()
        session.add(CarData(post_id=post.id, **car_values))
        return post.id


def make_subscriber(factory: sessionmaker[Session], telegram_id: int = 555, *, active: bool = True,
                    ends_in: timedelta = timedelta(days=30)) -> int:
    """A user with one subscription (active or not, ending `ends_in` from now); returns the user id."""
    now = utcnow()
    with factory() as session, session.begin():
        user = User(telegram_id=telegram_id, first_name="Ivan")
        session.add(user)
        session.flush()
        session.add(Subscription(user_id=user.id, type=SubscriptionType.MONTHLY, is_active=active,
                                 starts_at=now - timedelta(days=1), ends_at=now + ends_in))
        return user.id


def add_seller_contact(factory: sessionmaker[Session], post_id: int, **values: Any) -> None:
    with factory() as session, session.begin():
        session.add(SellerContact(post_id=post_id, **values))
