"""LOG_TO_SHEETS: warnings and errors appended to "Логи" in batches, bounded, never blocking the caller."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.log_handler import SheetsLogHandler, install
from cars_bot.sheets.workbook import LOG_COMPONENT, LOG_TEXT, LOG_TYPE, LOGS
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger("cars_bot.tasks.test_log_handler")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def test_warnings_and_errors_are_written_in_one_batch(workbook: LocalWorkbook, logger: logging.Logger) -> None:
    handler = SheetsLogHandler(lambda: workbook, "worker", start_thread=False)
    logger.addHandler(handler)
    logger.info("not written")
    logger.warning("OpenAI slow, falling back")
    try:
        raise ValueError("bad price")
    except ValueError:
        logger.exception("post 7 failed; broker at redis://:hunter2secret@10.0.0.5:6379/0")
    logging.getLogger("cars_bot.sheets.google").error("never: the sheet's own errors would feed themselves")
    workbook.writes = 0
    handler.flush()
    rows = workbook.read(LOGS)
    assert [r[LOG_TYPE] for r in rows] == ["WARNING", "ERROR"] and workbook.writes == 1
    assert rows[1][LOG_TEXT].endswith("(ValueError: bad price)") and "hunter2secret" not in rows[1][LOG_TEXT]
    assert rows[0][LOG_COMPONENT] == "worker: cars_bot.tasks.test_log_handler"
    handler.flush()
    assert len(workbook.read(LOGS)) == 2 and workbook.writes == 1  # nothing new, nothing written


def test_a_storm_is_bounded_and_counted(workbook: LocalWorkbook, logger: logging.Logger) -> None:
    handler = SheetsLogHandler(lambda: workbook, "monitor", max_rows=50, start_thread=False)
    logger.addHandler(handler)
    for n in range(120):
        logger.error("error %d", n)
    handler.flush()
    rows = workbook.read(LOGS)
    assert len(rows) == 51 and rows[0][LOG_TEXT] == "error 70" and rows[49][LOG_TEXT] == "error 119"
    assert rows[50][LOG_TEXT] == "70 more messages were dropped (at most 50 a minute)"


class BlockedWorkbook:
    """A workbook whose write waits until released (a slow or hanging spreadsheet)."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.rows: list[dict] = []

    def append(self, sheet: str, rows, *, unique_by=None) -> int:
        self.entered.set()
        assert self.release.wait(30)
        self.rows.extend(rows)
        return len(rows)


def test_logging_never_waits_for_the_sheet(logger: logging.Logger) -> None:
    book = BlockedWorkbook()
    handler = SheetsLogHandler(lambda: book, "worker", start_thread=False)
    logger.addHandler(handler)
    logger.error("first")
    flusher = threading.Thread(target=handler.flush)
    flusher.start()
    assert book.entered.wait(10)  # the write hangs...
    caller = threading.Thread(target=lambda: [logger.error("during %d", n) for n in range(200)])
    caller.start()
    caller.join(10)
    assert not caller.is_alive()  # ...and the code that logs carries on
    book.release.set()
    flusher.join(10)
    handler.flush()
    assert [r[LOG_TEXT] for r in book.rows][:1] == ["first"] and len(book.rows) == 1 + 50 + 1


def test_a_failed_write_drops_the_batch_and_the_next_one_succeeds(workbook: LocalWorkbook, logger: logging.Logger,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("spreadsheet unavailable")
        return workbook

    handler = SheetsLogHandler(flaky, "worker", start_thread=False)
    logger.addHandler(handler)
    logger.error("lost")
    handler.flush()
    assert "could not write 1 log rows" in caplog.text
    logger.error("kept")
    handler.flush()
    assert [r[LOG_TEXT] for r in workbook.read(LOGS)] == ["kept"]


def test_the_thread_writes_by_itself(workbook: LocalWorkbook, logger: logging.Logger) -> None:
    handler = SheetsLogHandler(lambda: workbook, "worker", interval=0.05)
    logger.addHandler(handler)
    logger.warning("written by the thread")
    deadline = time.monotonic() + 10
    while not workbook.read(LOGS) and time.monotonic() < deadline:
        time.sleep(0.05)
    handler.close()
    assert [r[LOG_TEXT] for r in workbook.read(LOGS)] == ["written by the thread"]


def test_requests_per_flush_on_google(fake_sheets: FakeSheetsServer, logger: logging.Logger) -> None:
    from tests.cars_bot.sheets.test_google import SHEET_ID, workbook_for

    fake_sheets.spreadsheet(SHEET_ID).add_sheet(LOGS, [["Дата/время", "Тип события", "Описание", "Компонент"]])
    google = workbook_for(fake_sheets)
    handler = SheetsLogHandler(lambda: google, "worker", start_thread=False)
    logger.addHandler(handler)
    for n in range(10):
        logger.error("error %d", n)
    handler.flush()
    assert len(fake_sheets.requests) == 3 and fake_sheets.count("POST") == 1  # metadata, read, one append
    fake_sheets.requests.clear()
    logger.warning("later")
    handler.flush()
    assert len(fake_sheets.requests) == 2 and fake_sheets.count("POST") == 1  # read, one append
    assert len(workbook_for(fake_sheets).read(LOGS)) == 11


def test_install_only_when_on(settings, monkeypatch: pytest.MonkeyPatch, logger: logging.Logger) -> None:
    from cars_bot.config import reset_settings

    assert install(logger, "worker") is None and not logger.handlers
    monkeypatch.setenv("LOG_TO_SHEETS", "on")
    reset_settings()
    handler = install(logger, "worker")
    assert isinstance(handler, SheetsLogHandler) and install(logger, "worker") is handler
    assert logger.handlers == [handler]
    handler.close()
