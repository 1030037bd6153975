"""The local JSON workbook: first use, round trip, hand edits, atomic locked writes from several processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from cars_bot.config import load_settings
from cars_bot.errors import PermanentError
from cars_bot.sheets.backends import open_workbook
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import (
    ANALYTICS,
    CH_ACTIVE,
    CH_TITLE,
    CH_USERNAME,
    CHANNELS,
    LAYOUT,
    SUB_SYNCED,
    SUB_USER_ID,
    SUBSCRIBERS,
    Row,
    Workbook,
)


def test_first_use_creates_every_sheet_with_its_headers(workbook: LocalWorkbook) -> None:
    assert not workbook.path.exists()
    assert workbook.read(CHANNELS) == []
    data = json.loads(workbook.path.read_text(encoding="utf-8"))
    for sheet, headers in LAYOUT.items():
        assert data[sheet] == {"headers": list(headers), "rows": []}
    assert "Каналы для мониторинга" in data and "Подписчики" in data
    assert isinstance(workbook, Workbook)


def test_round_trip_append_update_read(workbook: LocalWorkbook) -> None:
    rows_in = [{CH_USERNAME: "@one", CH_ACTIVE: True}, {CH_USERNAME: "@two", CH_ACTIVE: False}]
    assert workbook.append(CHANNELS, rows_in) == 2
    workbook.update(CHANNELS, 3, {CH_TITLE: "Второй канал", CH_ACTIVE: True})
    assert workbook.read(CHANNELS)[1][CH_TITLE] == ""  # queued, not written yet
    assert workbook.flush() == 2
    rows = workbook.read(CHANNELS)
    assert [r.number for r in rows] == [2, 3]
    assert rows[0][CH_USERNAME] == "@one" and rows[0][CH_ACTIVE] == "TRUE"
    assert rows[1][CH_TITLE] == "Второй канал" and rows[1][CH_ACTIVE] == "TRUE"
    assert set(rows[0]) == set(LAYOUT[CHANNELS])  # every header present, blanks as ""
    assert rows[0].cell("Номер") == ""
    # a second object on the same file sees the same content
    assert LocalWorkbook(workbook.path).read(CHANNELS) == rows


def test_hand_edited_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "wb.json"
    path.write_text(json.dumps({
        CHANNELS: {"headers": ["id", "username  канала", "Активен"],
                   "rows": [{"username канала": "@hand", "Активен": True}, {}, ["7", "@listed", False]]},
        SUBSCRIBERS: [{"User ID": 123456789}],
    }, ensure_ascii=False), encoding="utf-8")
    book = LocalWorkbook(path)
    rows = book.read(CHANNELS)
    assert [r.number for r in rows] == [2, 4]  # the blank row still counts
    assert rows[0][CH_USERNAME] == "@hand" and rows[0][CH_ACTIVE] == "TRUE"
    assert rows[1]["ID"] == "7" and rows[1][CH_ACTIVE] == "FALSE"
    assert book.read(SUBSCRIBERS)[0][SUB_USER_ID] == "123456789"
    assert book.ensure_sheet(CHANNELS) is True  # adds the missing layout headers
    assert book.ensure_sheet(CHANNELS) is False
    assert book.read(CHANNELS)[0][CH_TITLE] == ""


def test_updates_are_written_in_one_rewrite(workbook: LocalWorkbook) -> None:
    workbook.append(CHANNELS, [{CH_USERNAME: f"@c{i}"} for i in range(5)])
    before = workbook.writes
    for number in range(2, 7):
        workbook.update(CHANNELS, number, {CH_TITLE: f"t{number}"})
    assert workbook.flush() == 5
    assert workbook.writes == before + 1
    assert workbook.flush() == 0 and workbook.writes == before + 1


def test_unknown_column_and_bad_row_are_refused(workbook: LocalWorkbook) -> None:
    workbook.append(CHANNELS, [{CH_USERNAME: "@c"}])
    with pytest.raises(ValueError, match="row 1"):
        workbook.update(CHANNELS, 1, {CH_TITLE: "x"})
    workbook.update(CHANNELS, 2, {"Нет такой колонки": "x"})
    with pytest.raises(PermanentError, match="no column"):
        workbook.flush()


def test_invalid_json_is_a_permanent_error_and_the_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "wb.json"
    path.write_text('{"Каналы для мониторинга": [', encoding="utf-8")
    with pytest.raises(PermanentError, match="not valid JSON"):
        LocalWorkbook(path).read(CHANNELS)
    assert path.read_text(encoding="utf-8") == '{"Каналы для мониторинга": ['


def test_append_unique_by_skips_keys_already_present(workbook: LocalWorkbook) -> None:
    assert workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 1}, {SUB_USER_ID: 2}], unique_by=SUB_USER_ID) == 2
    assert workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 2}, {SUB_USER_ID: 3}, {SUB_USER_ID: 3}],
                           unique_by=SUB_USER_ID) == 1
    writes = workbook.writes
    assert workbook.append(SUBSCRIBERS, [{SUB_USER_ID: 1}], unique_by=SUB_USER_ID) == 0
    assert workbook.writes == writes
    assert [r[SUB_USER_ID] for r in workbook.read(SUBSCRIBERS)] == ["1", "2", "3"]


def test_no_temporary_files_are_left_behind(workbook: LocalWorkbook) -> None:
    workbook.append(ANALYTICS, [{"Дата": "2025-01-01"}])
    leftovers = [p.name for p in workbook.path.parent.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def _writer(path: str, worker: int, count: int) -> None:
    book = LocalWorkbook(path)
    for i in range(count):
        book.append(SUBSCRIBERS, [{SUB_USER_ID: worker * 1000 + i}])
        book.append(SUBSCRIBERS, [{SUB_USER_ID: 999_999}], unique_by=SUB_USER_ID)  # everyone races on one key
        book.update(SUBSCRIBERS, 2, {SUB_SYNCED: f"w{worker}-{i}"})
        book.flush()


@pytest.mark.timeout(120)
def test_concurrent_writers_do_not_lose_rows(workbook: LocalWorkbook) -> None:
    # "spawn", not "fork": a forked child runs the after-fork hooks of everything the test process
    # holds, and kombu's hook closes the Redis connections inherited from earlier tests (a pooled
    # channel waiting in BRPOP then blocks forever reading the parent's socket). A spawned child is a
    # fresh interpreter that inherits neither the hooks nor the sockets, like a real worker process.
    workbook.read(SUBSCRIBERS)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(workbook.path), w, 15)) for w in range(4)]
    try:
        for process in workers:
            process.start()
        for process in workers:
            process.join(timeout=90)
            assert process.exitcode == 0
    finally:
        for process in workers:
            if process.is_alive():
                process.kill()
                process.join()
    ids = [r[SUB_USER_ID] for r in workbook.read(SUBSCRIBERS)]
    assert len(ids) == 4 * 15 + 1
    assert ids.count("999999") == 1
    assert sorted(i for i in ids if i != "999999") == sorted(str(w * 1000 + i) for w in range(4) for i in range(15))
    json.loads(workbook.path.read_text(encoding="utf-8"))  # still one valid document


def test_open_workbook_picks_the_backend(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text("{}", encoding="utf-8")
    local = open_workbook(load_settings({"CARSCTL_HOME": str(tmp_path)}, cwd=tmp_path))
    assert isinstance(local, LocalWorkbook) and local.path == tmp_path / "workbook.json"
    half = open_workbook(load_settings({"CARSCTL_HOME": str(tmp_path), "GOOGLE_SPREADSHEET_ID": "abc"}, cwd=tmp_path))
    assert isinstance(half, LocalWorkbook)
    from cars_bot.sheets.google import GoogleWorkbook

    google = open_workbook(load_settings({"CARSCTL_HOME": str(tmp_path), "GOOGLE_SPREADSHEET_ID": "abc",
                                          "GOOGLE_CREDENTIALS_FILE": str(key)}, cwd=tmp_path))
    assert isinstance(google, GoogleWorkbook)
    assert google.requests == 0  # nothing is requested before the first read


def test_row_is_a_dict_with_its_number() -> None:
    row = Row(5, {"a": " x "})
    assert row == {"a": " x "} and row.number == 5 and row.cell("a") == "x" and row.cell("b") == ""
    assert "Row(5" in repr(row)
