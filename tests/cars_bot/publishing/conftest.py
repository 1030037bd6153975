"""Fixtures of the publishing tests: the fake telethon transport, a Telegram publisher on it, and a
session factory whose next commit can be made to crash. Plain helpers live in `fake_telegram` and
`post_rows` (importable by the tests; a conftest is not)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from tests.cars_bot.publishing.fake_telegram import FakeTelegramClient, telegram_settings


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
