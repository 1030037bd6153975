"""`sheets init|status|sync` against the fake Google Sheets API: what each costs in requests."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.session import get_engine
from cars_bot.sheets.admin import SyncKind, init_workbook, run_recorded, sheets_status
from cars_bot.sheets.workbook import CHANNELS, FILTERS, LAYOUT, SUBSCRIBERS
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer
from tests.cars_bot.sheets.test_google import SHEET_ID, workbook_for


def test_init_an_empty_spreadsheet_then_nothing_to_do(fake_sheets: FakeSheetsServer) -> None:
    book = fake_sheets.spreadsheet(SHEET_ID)
    book.add_sheet(SUBSCRIBERS, [list(LAYOUT[SUBSCRIBERS][:9]), [111, "", "", "MONTHLY", True]], columns=9)
    result = init_workbook(workbook_for(fake_sheets))
    assert result.created == tuple(s for s in LAYOUT if s != SUBSCRIBERS)
    assert result.headers_added == (SUBSCRIBERS,) and result.filter_rows_added == 5
    # metadata 1; 5 worksheets created (add + headers: 10); the subscribers sheet read, grown and its
    # missing header written (3); the filter rows appended (1)
    assert len(fake_sheets.requests) == 15 and fake_sheets.count("POST") == 13
    rows = workbook_for(fake_sheets).read(SUBSCRIBERS)
    assert [r.cell("User ID") for r in rows] == ["111"]  # the admin's data is untouched
    fake_sheets.requests.clear()
    again = init_workbook(workbook_for(fake_sheets))
    assert (again.created, again.headers_added, again.filter_rows_added) == ((), (), 0)
    assert len(fake_sheets.requests) == 1 + len(LAYOUT) and fake_sheets.count("POST") == 0  # metadata, reads


def test_status_and_a_recorded_sync(fake_sheets: FakeSheetsServer, session: Session, database_file: str) -> None:
    fake_sheets.spreadsheet(SHEET_ID)
    init_workbook(workbook_for(fake_sheets))
    sessions = sessionmaker(bind=get_engine(database_file), expire_on_commit=False)
    result = run_recorded(SyncKind.CHANNELS, sessions, workbook_for(fake_sheets))
    assert result.total == 0
    fake_sheets.requests.clear()
    status = {w.worksheet: w for w in sheets_status(session, workbook_for(fake_sheets)).worksheets}
    assert len(fake_sheets.requests) == 1 + len(LAYOUT)  # metadata and one read per worksheet
    assert status[CHANNELS].last_sync_at is not None and status[FILTERS].last_sync_at is not None
    assert status[FILTERS].rows == 5 and status[SUBSCRIBERS].last_sync_at is None
    assert all(w.present for w in status.values())
