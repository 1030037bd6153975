"""`carsctl sheets init|status|sync` on the local workbook (the Google side: tests/cars_bot/sheets/test_admin.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from cars_bot.db.models import Channel
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import CH_ADDED, CH_USERNAME, CHANNELS, FILTERS, FLT_KEY, LAYOUT
from tests.carsctl.cli import invoke

pytestmark = pytest.mark.db


def test_init_creates_what_is_missing_and_touches_no_data(settings, db) -> None:
    path = settings.sheets_workbook
    path.parent.mkdir(parents=True, exist_ok=True)
    # An admin's workbook: a channels sheet with data and without the bot's last two columns.
    path.write_text(json.dumps({CHANNELS: {"headers": list(LAYOUT[CHANNELS][:7]),
                                           "rows": [{CH_USERNAME: "@cars_msk", CH_ADDED: "2025-01-01"}]}},
                               ensure_ascii=False), encoding="utf-8")
    result = invoke("sheets", "init", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["created"] == [s for s in LAYOUT if s != CHANNELS]
    assert data["headers_added"] == [CHANNELS] and data["filter_rows_added"] == 5
    workbook = LocalWorkbook(path)
    [row] = workbook.read(CHANNELS)
    assert (row[CH_USERNAME], row[CH_ADDED]) == ("@cars_msk", "2025-01-01")
    assert len(workbook.read(FILTERS)) == 5 and workbook.read(FILTERS)[0].cell(FLT_KEY) == "Глобальные ключевые слова"
    again = json.loads(invoke("sheets", "init", "--json").stdout)
    assert (again["created"], again["headers_added"], again["filter_rows_added"]) == ([], [], 0)


def test_sync_now_and_status_with_the_last_sync_and_error(settings, db) -> None:
    assert invoke("sheets", "init").exit_code == 0
    workbook = LocalWorkbook(settings.sheets_workbook)
    workbook.append(CHANNELS, [{CH_USERNAME: "@cars_msk"}])
    result = invoke("sheets", "sync", "channels", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"]["added"] == 1
    with db() as session:
        assert session.scalars(select(Channel.username)).all() == ["cars_msk"]
    status = {w["worksheet"]: w for w in json.loads(invoke("sheets", "status", "--json").stdout)["worksheets"]}
    assert status[CHANNELS]["last_sync_at"] and status[FILTERS]["last_sync_at"] and status[CHANNELS]["rows"] == 1
    assert status["Подписчики"]["last_sync_at"] is None and status["Логи"]["synced_by"] is None

    settings.sheets_workbook.write_text("{not json", encoding="utf-8")  # an admin broke the file
    failed = invoke("sheets", "sync", "subscribers")
    assert failed.exit_code == 1 and "is not valid JSON" in failed.output
    assert len(failed.output.strip().splitlines()) == 1
    settings.sheets_workbook.write_text("{}", encoding="utf-8")
    status = {w["worksheet"]: w for w in json.loads(invoke("sheets", "status", "--json").stdout)["worksheets"]}
    assert "is not valid JSON" in status["Подписчики"]["last_error"] and status["Подписчики"]["last_error_at"]
    assert not status[CHANNELS]["present"]
    table = invoke("sheets", "status")
    assert "carsctl sheets init" in table.output and "never" in table.output


def test_unknown_sync_is_a_usage_error(settings, db) -> None:
    result = invoke("sheets", "sync", "everything")
    assert result.exit_code == 2 and "use one of channels, subscribers, analytics" in result.output
