"""The gspread-backed workbook, with the real gspread client against a fake Sheets API on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import gspread
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel, Subscription, SubscriptionType, User
from cars_bot.errors import NotConfigured, PermanentError, TransientError
from cars_bot.sheets.analytics import AnalyticsAction, update_analytics
from cars_bot.sheets.channel_sync import sync_channels
from cars_bot.sheets.google import GoogleWorkbook, get_client, reset_clients
from cars_bot.sheets.subscriber_sync import sync_subscribers
from cars_bot.sheets.workbook import (
    ANALYTICS,
    CH_ADDED,
    CH_TITLE,
    CH_USERNAME,
    CHANNELS,
    LAYOUT,
    SUB_ACTIVE,
    SUB_END,
    SUB_NAME,
    SUB_SYNCED,
    SUB_TYPE,
    SUB_USER_ID,
    SUBSCRIBERS,
)
from tests.cars_bot.sheets.conftest import NOW
from tests.cars_bot.sheets.fake_sheets import FakeSheetsServer, FakeSpreadsheet

SHEET_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
CHANNEL_HEADERS = list(LAYOUT[CHANNELS])
PRIOR_SUBSCRIBER_HEADERS = list(LAYOUT[SUBSCRIBERS][:9])  # the prior system's A-I, without our column J


@pytest.fixture
def book(fake_sheets: FakeSheetsServer) -> FakeSpreadsheet:
    spreadsheet = fake_sheets.spreadsheet(SHEET_ID)
    spreadsheet.add_sheet(CHANNELS, [
        CHANNEL_HEADERS,
        ["1", "@Cars_Msk", "Авто Москва", 79991234567, "@seller", True],
        ["2", "https://t.me/+Invite_Hash", "", "", "", False, "", 3],
    ], columns=9)
    return spreadsheet


def workbook_for(fake: FakeSheetsServer, spreadsheet_id: str = SHEET_ID) -> GoogleWorkbook:
    client = gspread.Client(auth=None, session=fake.session())  # type: ignore[arg-type]
    return GoogleWorkbook(None, spreadsheet_id, client=client)


def test_read_update_append_with_batched_requests(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    wb = workbook_for(fake_sheets)
    rows = wb.read(CHANNELS)
    assert [r.number for r in rows] == [2, 3]
    assert rows[0][CH_USERNAME] == "@Cars_Msk" and rows[0]["Номер"] == "79991234567" and rows[0]["Активен"] == "TRUE"
    assert rows[1]["Активен"] == "FALSE" and rows[1]["Опубликовано"] == "3"
    wb.read(CHANNELS)
    assert fake_sheets.count("GET", "/values/") == 1  # read once per sheet per workbook object
    wb.update(CHANNELS, 2, {CH_ADDED: "2025-03-04 10:00:00"})
    wb.update(CHANNELS, 3, {CH_ADDED: "2025-03-04 10:00:00", CH_TITLE: "=HYPERLINK(\"x\")"})
    assert wb.flush() == 3
    assert fake_sheets.count("POST", "values:batchUpdate") == 1
    assert book.sheets[CHANNELS]["rows"][1][6] == 45720 + 10 / 24  # USER_ENTERED: a real date cell
    assert book.sheets[CHANNELS]["rows"][2][2] == '=HYPERLINK("x")'  # written as text, not a formula
    assert wb.read(CHANNELS)[0][CH_ADDED] == "2025-03-04 10:00:00"  # cache follows the writes
    fresh = workbook_for(fake_sheets)
    assert fresh.read(CHANNELS)[0][CH_ADDED] == "2025-03-04 10:00:00"  # serial date read back as text
    assert fresh.append(CHANNELS, [{CH_USERNAME: "@new_one", "Активен": True}, {CH_USERNAME: "@Cars_Msk"}],
                        unique_by=CH_USERNAME) == 1
    assert fake_sheets.count("POST", ":append") == 1
    assert [r[CH_USERNAME] for r in fresh.read(CHANNELS)] == ["@Cars_Msk", "https://t.me/+Invite_Hash", "@new_one"]


def test_ensure_sheet_creates_missing_sheets_and_columns(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    book.add_sheet(SUBSCRIBERS, [PRIOR_SUBSCRIBER_HEADERS, [123, "u", "Имя", "MONTHLY", True]], columns=9)
    wb = workbook_for(fake_sheets)
    assert wb.ensure_sheet(ANALYTICS) is True
    assert book.values(ANALYTICS) == [list(LAYOUT[ANALYTICS])]
    assert wb.ensure_sheet(SUBSCRIBERS) is True  # adds "Синхронизировано", growing the 9-column grid
    assert book.sheets[SUBSCRIBERS]["columnCount"] == 10
    assert book.values(SUBSCRIBERS)[0][9] == SUB_SYNCED
    assert wb.ensure_sheet(SUBSCRIBERS) is False and wb.ensure_sheet(CHANNELS) is False
    wb.update(SUBSCRIBERS, 2, {SUB_SYNCED: "v1:abc"})
    wb.flush()
    assert book.values(SUBSCRIBERS)[1][9] == "v1:abc"


def test_http_429_is_transient_with_retry_after(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    fake_sheets.fail_next(429, "Quota exceeded for quota metric 'Read requests'", headers={"Retry-After": "7"},
                          status_text="RESOURCE_EXHAUSTED")
    with pytest.raises(TransientError) as caught:
        workbook_for(fake_sheets).read(CHANNELS)
    assert caught.value.retry_after == 7.0
    assert "429" in str(caught.value) and SHEET_ID not in str(caught.value)


def test_http_429_without_header_waits_60s(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    wb = workbook_for(fake_sheets)
    wb.read(CHANNELS)
    wb.update(CHANNELS, 2, {CH_TITLE: "x"})
    fake_sheets.fail_next(429, "Too many requests", status_text="RESOURCE_EXHAUSTED")
    with pytest.raises(TransientError) as caught:
        wb.flush()
    assert caught.value.retry_after == 60.0


@pytest.mark.parametrize(("status", "status_text", "reason"), [
    (500, "INTERNAL", None), (503, "UNAVAILABLE", None), (403, "PERMISSION_DENIED", "userRateLimitExceeded"),
])
def test_server_and_quota_errors_are_transient(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet, status: int,
                                               status_text: str, reason: str | None) -> None:
    fake_sheets.fail_next(status, "try later", status_text=status_text, reason=reason)
    with pytest.raises(TransientError) as caught:
        workbook_for(fake_sheets).read(CHANNELS)
    assert caught.value.retry_after == 60.0


def test_forbidden_is_permanent_with_a_hint(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet,
                                            tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"client_email": "bot@project.iam.gserviceaccount.com"}), encoding="utf-8")
    fake_sheets.fail_next(403, "The caller does not have permission", status_text="PERMISSION_DENIED")
    client = gspread.Client(auth=None, session=fake_sheets.session())  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="share the spreadsheet with the service account bot@project"):
        GoogleWorkbook(key, SHEET_ID, client=client).read(CHANNELS)


def test_unknown_spreadsheet_is_permanent(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    with pytest.raises(PermanentError, match=r"not found.*GOOGLE_SPREADSHEET_ID"):
        workbook_for(fake_sheets, "no-such-spreadsheet").read(CHANNELS)


def test_unknown_column_is_permanent(fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    wb = workbook_for(fake_sheets)
    wb.update(CHANNELS, 2, {"Нет такой": "x"})
    with pytest.raises(PermanentError, match="no column"):
        wb.flush()


def test_connection_refused_is_transient(fake_sheets: FakeSheetsServer) -> None:
    from tests.cars_bot.sheets.fake_sheets import LocalSheetsSession

    client = gspread.Client(auth=None, session=LocalSheetsSession("http://127.0.0.1:9"))  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="unreachable"):
        GoogleWorkbook(None, SHEET_ID, client=client).read(CHANNELS)


def test_missing_credentials_file_is_not_configured(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match="does not exist"):
        GoogleWorkbook(tmp_path / "missing.json", SHEET_ID)
    with pytest.raises(NotConfigured):
        GoogleWorkbook(None, SHEET_ID)
    with pytest.raises(NotConfigured):
        GoogleWorkbook(tmp_path / "missing.json", "")


def test_bad_key_file_is_permanent(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text("{not json", encoding="utf-8")
    with pytest.raises(PermanentError, match="not a usable service-account key"):
        get_client(key)


def test_one_client_per_process(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem,
        "client_email": "bot@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }), encoding="utf-8")
    reset_clients()
    try:
        first = get_client(key)
        assert get_client(key) is first  # no token is fetched until a request is made
        assert isinstance(first, gspread.Client)
        assert GoogleWorkbook(key, SHEET_ID)._http() is first.http_client
    finally:
        reset_clients()


def test_channel_sync_through_google(session: Session, fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    result = sync_channels(session, workbook_for(fake_sheets), now=NOW)
    assert (result.added, result.total, result.cells_written) == (2, 2, 4)  # dates, and "Опубликовано" 0
    names = {c.username: c for c in session.scalars(select(Channel))}
    assert set(names) == {"cars_msk", "https://t.me/+Invite_Hash"}
    assert names["cars_msk"].seller_phone == "79991234567" and names["https://t.me/+Invite_Hash"].is_active is False
    # metadata, one read, one batched write; then the missing filters worksheet is created (2 writes)
    assert len(fake_sheets.requests) == 5 and fake_sheets.count("POST") == 3
    fake_sheets.requests.clear()
    second = workbook_for(fake_sheets)
    assert sync_channels(session, second, now=NOW).cells_written == 0
    # steady state: metadata and one read of each worksheet, nothing written
    assert len(fake_sheets.requests) == 3 and fake_sheets.count("POST") == 0 and second.writes == 0
    # a new source post and a publication: "Опубликовано" and "Последний пост" in the one batch
    from cars_bot.posts import store_post

    store_post(session, channel="@cars_msk", text="x", message_id=41)
    names["cars_msk"].published_posts = 1
    session.commit()
    fake_sheets.requests.clear()
    third = workbook_for(fake_sheets)
    assert sync_channels(session, third, now=NOW).cells_written == 2
    assert len(fake_sheets.requests) == 4 and fake_sheets.count("POST") == 1
    rows = {r["Username канала"]: r for r in workbook_for(fake_sheets).read(CHANNELS)}
    assert (rows["@Cars_Msk"]["Опубликовано"], rows["@Cars_Msk"]["Последний пост"]) == (
        "1", "https://t.me/cars_msk/41")


def test_subscriber_sync_through_google(session: Session, fake_sheets: FakeSheetsServer,
                                        book: FakeSpreadsheet) -> None:
    book.add_sheet(SUBSCRIBERS, [PRIOR_SUBSCRIBER_HEADERS, [111, "", "", "MONTHLY", True]], columns=9)
    known = User(telegram_id=111, first_name="Анна", created_at=NOW - timedelta(days=3))
    fresh = User(telegram_id=222, first_name="Борис", created_at=NOW - timedelta(days=1))
    session.add_all([known, fresh])
    session.commit()
    result = sync_subscribers(session, workbook_for(fake_sheets), now=NOW)
    assert (result.applied, result.appended, result.rows_updated) == (1, 1, 1)
    [sub] = session.scalars(select(Subscription))
    assert sub.type is SubscriptionType.MONTHLY and sub.ends_at == NOW + timedelta(days=30)
    wb = workbook_for(fake_sheets)
    rows = {r[SUB_USER_ID]: r for r in wb.read(SUBSCRIBERS)}
    assert rows["111"][SUB_END] == "2025-04-03 10:00:00" and rows["111"][SUB_NAME] == "Анна"
    assert rows["222"][SUB_TYPE] == "FREE" and rows["222"][SUB_ACTIVE] == "FALSE"
    fake_sheets.requests.clear()
    again = sync_subscribers(session, workbook_for(fake_sheets), now=NOW + timedelta(minutes=5))
    assert (again.applied, again.appended, again.rows_updated) == (0, 0, 0)
    assert fake_sheets.count("POST") == 0


def test_analytics_through_google(session: Session, fake_sheets: FakeSheetsServer, book: FakeSpreadsheet) -> None:
    assert update_analytics(session, workbook_for(fake_sheets), now=NOW).action is AnalyticsAction.APPENDED
    later = NOW + timedelta(hours=1)
    assert update_analytics(session, workbook_for(fake_sheets), now=later).action is AnalyticsAction.UNCHANGED
    assert len(book.values(ANALYTICS)) == 2  # header + today's row (its date stored as a serial date)
