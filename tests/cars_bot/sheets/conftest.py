"""Fixtures of the Sheets tests: a private SQLite database, a local workbook, a fake Sheets API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.models import Base
from cars_bot.db.session import get_engine
from cars_bot.sheets.local import LocalWorkbook
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer

#: A fixed "now" for the sync tests (a Tuesday, 10:00 UTC).
NOW = datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def database_file(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite database with every table, in this test's temporary directory."""
    url = "sqlite:///" + str(tmp_path / "t.sqlite3")
    engine = get_engine(url)
    Base.metadata.create_all(engine)
    yield url
    engine.dispose()


@pytest.fixture
def session(database_file: str) -> Iterator[Session]:
    """A session on the private database."""
    factory = sessionmaker(bind=get_engine(database_file), expire_on_commit=False)
    with factory() as session:
        yield session


@pytest.fixture
def workbook(tmp_path: Path) -> LocalWorkbook:
    """A local workbook in this test's temporary directory (not created yet)."""
    return LocalWorkbook(tmp_path / "workbook.json")


@pytest.fixture
def fake_sheets() -> Iterator[FakeSheetsServer]:
    """The fake Google Sheets API on 127.0.0.1."""
    with FakeSheetsServer() as server:
        yield server
