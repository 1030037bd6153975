"""The sheet "Настройки фильтров": read by the channel sync, overrides the environment, keeps the previous
value of a cell it cannot read, and really filters posts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from cars_bot.config import get_settings, load_settings, reset_settings
from cars_bot.db.models import Base, PostStatus
from cars_bot.db.session import get_engine, session_scope
from cars_bot.posts import store_post
from cars_bot.sheets.channel_sync import sync_channels
from cars_bot.sheets.filter_sync import (
    describe_filters,
    parse_confidence,
    parse_price,
    settings_with_sheet_filters,
)
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import CHANNELS, FILTERS, FLT_KEY, FLT_VALUE, LAYOUT
from tests.cars_bot.sheets.conftest import NOW
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer

SALE = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Москва. Цена 2 150 000 ₽")


def _set(workbook, values: dict[str, str]) -> None:
    """Write key/value rows, updating rows whose key is already there."""
    workbook.ensure_sheet(FILTERS)
    rows = {r.cell(FLT_KEY): r.number for r in workbook.read(FILTERS)}
    new = []
    for key, value in values.items():
        if key in rows:
            workbook.update(FILTERS, rows[key], {FLT_VALUE: value})
        else:
            new.append({FLT_KEY: key, FLT_VALUE: value})
    workbook.flush()
    if new:
        workbook.append(FILTERS, new)


def _effective(session: Session, **environ: str):
    return settings_with_sheet_filters(load_settings(environ, cwd=Path("/nonexistent")), session)


def test_the_sheet_overrides_the_environment_and_blank_cells_do_not(session: Session,
                                                                     workbook: LocalWorkbook) -> None:
    _set(workbook, {"Порог уверенности AI": "0,9", "Минимальная цена": "500 000 ₽",
                    "Глобальные ключевые слова": "Toyota, Kia", "Исключаемые слова": ""})
    result = sync_channels(session, workbook, now=NOW)
    assert result.filters.set_in_sheet == ("GLOBAL_KEYWORDS", "MIN_CONFIDENCE_SCORE", "MIN_PRICE")
    assert result.filters.problems == ()
    settings = _effective(session, MIN_PRICE="100", MAX_PRICE="9000000", EXCLUDED_WORDS="битая")
    assert (settings.min_confidence, settings.min_price, settings.max_price) == (0.9, 500_000, 9_000_000)
    assert settings.global_keywords == ("toyota", "kia") and settings.excluded_words == ("битая",)
    assert (settings.sources["min_price"], settings.sources["max_price"], settings.sources["excluded_words"]) == (
        "sheet", "environment", "environment")
    assert settings.sources["min_confidence"] == "sheet"


def test_an_unreadable_value_is_reported_and_the_previous_one_kept(session: Session,
                                                                   workbook: LocalWorkbook) -> None:
    _set(workbook, {"Минимальная цена": "500 000", "Максимальная цена": "3 млн"})
    sync_channels(session, workbook, now=NOW)
    _set(workbook, {"Минимальная цена": "пятьсот тысяч", "Порог уверенности AI": "1.5"})
    result = sync_channels(session, workbook, now=NOW).filters
    assert result.unreadable == ("MIN_CONFIDENCE_SCORE", "MIN_PRICE")
    assert any("'пятьсот тысяч' is not a price" in p and "previous value is kept" in p for p in result.problems)
    settings = _effective(session, MIN_CONFIDENCE_SCORE="0.6")
    assert settings.min_price == 500_000 and settings.max_price == 3_000_000  # the previous sheet value
    assert settings.min_confidence == 0.6 and settings.sources["min_confidence"] == "environment"
    # a minimum above the maximum: both keep their previous values
    _set(workbook, {"Минимальная цена": "4 000 000", "Порог уверенности AI": ""})
    result = sync_channels(session, workbook, now=NOW).filters
    assert set(result.unreadable) == {"MIN_PRICE", "MAX_PRICE"}
    settings = _effective(session)
    assert (settings.min_price, settings.max_price) == (500_000, 3_000_000)


def test_filter_values_people_type() -> None:
    assert [parse_price(t) for t in ("1 500 000", "1 500 000 ₽", "1,5 млн", "900к", "1.500.000",
                                     "700 тыс. руб")] == [1_500_000, 1_500_000, 1_500_000, 900_000, 1_500_000,
                                                          700_000]
    assert parse_confidence("0,8") == parse_confidence("80%") == 0.8
    for bad in ("abc", "-5"):
        with pytest.raises(ValueError):
            parse_price(bad)
    with pytest.raises(ValueError):
        parse_confidence("2")


def test_filters_through_google(session: Session, fake_sheets: FakeSheetsServer) -> None:
    from tests.cars_bot.sheets.test_google import SHEET_ID, workbook_for

    book = fake_sheets.spreadsheet(SHEET_ID)
    book.add_sheet(CHANNELS, [list(LAYOUT[CHANNELS])], columns=9)
    book.add_sheet(FILTERS, [[FLT_KEY, FLT_VALUE], ["Максимальная цена", "2 000 000"]], columns=3)
    result = sync_channels(session, workbook_for(fake_sheets), now=NOW)
    assert result.filters.set_in_sheet == ("MAX_PRICE",)
    assert _effective(session).max_price == 2_000_000
    fake_sheets.requests.clear()
    sync_channels(session, workbook_for(fake_sheets), now=NOW)
    assert len(fake_sheets.requests) == 3 and fake_sheets.count("POST") == 0  # metadata + 2 reads


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARSCTL_HOME", str(tmp_path))
    url = "sqlite:///" + str(tmp_path / "t.sqlite3")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MAX_PRICE", "10000000")
    for name in ("GOOGLE_CREDENTIALS_FILE", "GOOGLE_SPREADSHEET_ID", "SHEETS_WORKBOOK", "GLOBAL_KEYWORDS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    Base.metadata.create_all(get_engine(url))
    yield tmp_path
    get_engine(url).dispose()
    reset_settings()


def test_the_worker_filters_posts_with_the_sheet_values(home: Path) -> None:
    """End to end: the channel sync task reads the sheet, process_post_task rejects by its values."""
    from cars_bot.tasks.ai_tasks import process_post_task
    from cars_bot.tasks.sheets_tasks import sync_channels_task

    workbook = LocalWorkbook(get_settings().sheets_workbook)
    _set(workbook, {"Глобальные ключевые слова": "kia, hyundai", "Максимальная цена": "1 000 000"})
    sync_channels_task.run()
    with session_scope() as session:
        post, _ = store_post(session, channel="@cars_msk", text=SALE)
        session.flush()
        post_id = post.id
    result = process_post_task.run(post_id)
    assert result["status"] == PostStatus.REJECTED and "none of the keywords kia, hyundai" in result["reason"]
    _set(workbook, {"Глобальные ключевые слова": "toyota"})
    sync_channels_task.run()
    with session_scope() as session:
        post, _ = store_post(session, channel="@cars_msk", text=SALE + " срочно")
        session.flush()
        post_id = post.id
    result = process_post_task.run(post_id)
    assert result["status"] == PostStatus.REJECTED and "above the maximum 1000000" in result["reason"]
    report = describe_filters(get_settings())
    views = {v.name: v for v in report.filters}
    assert report.sheet_values == "read"
    assert (views["MAX_PRICE"].value, views["MAX_PRICE"].source) == (1_000_000, "sheet")
    assert views["MIN_PRICE"].source == "default" and views["GLOBAL_KEYWORDS"].value == "toyota"
    data = json.loads(json.dumps(result))
    assert data["post_id"] == post_id
