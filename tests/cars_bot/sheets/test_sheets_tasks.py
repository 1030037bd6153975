"""The Sheets tasks, called directly, on the local workbook under CARSCTL_HOME."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cars_bot.celery_app import route_task
from cars_bot.config import get_settings, reset_settings
from cars_bot.db.models import Base, Channel, User
from cars_bot.db.session import get_engine, session_scope
from cars_bot.sheets.workbook import CH_USERNAME, CHANNELS, SUB_USER_ID, SUBSCRIBERS
from cars_bot.tasks.sheets_tasks import sync_channels_task, sync_subscribers_task, update_analytics_task

TASKS = {
    "cars_bot.tasks.sheets_tasks.sync_channels_task": (sync_channels_task, 30, 60),
    "cars_bot.tasks.sheets_tasks.sync_subscribers_task": (sync_subscribers_task, 60, 90),
    "cars_bot.tasks.sheets_tasks.update_analytics_task": (update_analytics_task, 90, 120),
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """CARSCTL_HOME and the database in this test's directory; Google not configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARSCTL_HOME", str(tmp_path))
    url = "sqlite:///" + str(tmp_path / "t.sqlite3")
    monkeypatch.setenv("DATABASE_URL", url)
    for name in ("GOOGLE_CREDENTIALS_FILE", "GOOGLE_SPREADSHEET_ID", "SHEETS_WORKBOOK"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    Base.metadata.create_all(get_engine(url))
    yield tmp_path
    get_engine(url).dispose()
    reset_settings()


def test_names_limits_and_queue() -> None:
    for name, (task, soft, hard) in TASKS.items():
        assert task.name == name
        assert (task.soft_time_limit, task.time_limit) == (soft, hard)
        assert route_task(name)["queue"] == "sheets_sync"


def test_sync_channels_task(home: Path) -> None:
    assert get_settings().sheets_workbook == home / "workbook.json"
    result = sync_channels_task.run()  # first use creates the workbook with its headers
    assert result["total"] == 0
    data = json.loads((home / "workbook.json").read_text(encoding="utf-8"))
    data[CHANNELS]["rows"].append({CH_USERNAME: "@cars_msk"})  # a person edits the file
    (home / "workbook.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = sync_channels_task.apply().get()
    assert result["added"] == 1
    assert json.loads(json.dumps(result))["problems"] == []  # the result backend stores JSON
    assert list(result) == ["added", "updated", "deactivated", "total", "skipped", "invalid", "duplicates",
                            "cells_written", "problems", "synced_at", "filters"]
    with session_scope() as session:
        assert [c.username for c in session.scalars(select(Channel))] == ["cars_msk"]


def test_sync_subscribers_task(home: Path) -> None:
    with session_scope() as session:
        session.add(User(telegram_id=555, first_name="Вера"))
    result = sync_subscribers_task.apply().get()
    assert result["appended"] == 1
    assert sync_subscribers_task.run()["appended"] == 0
    data = json.loads((home / "workbook.json").read_text(encoding="utf-8"))
    assert [r[SUB_USER_ID] for r in data[SUBSCRIBERS]["rows"]] == ["555"]


def test_update_analytics_task(home: Path) -> None:
    result = update_analytics_task.apply().get()
    assert result["action"] == "appended" and result["revenue"] == 0
    assert json.loads(json.dumps(result))["action"] == "appended"  # the outcome is stored as its plain value
    assert update_analytics_task.run()["action"] == "unchanged"
