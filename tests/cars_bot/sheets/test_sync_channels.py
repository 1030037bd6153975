"""Channel sync: the sheet owns the channel list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel
from cars_bot.errors import PermanentError
from cars_bot.sheets.channel_sync import sync_channels
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import (
    CH_ACTIVE,
    CH_ADDED,
    CH_PHONE,
    CH_SELLER,
    CH_TITLE,
    CH_USERNAME,
    CHANNELS,
)
from tests.cars_bot.sheets.conftest import NOW


def channels(session: Session) -> dict[str, Channel]:
    session.expire_all()
    return {c.username: c for c in session.scalars(select(Channel))}


@pytest.fixture
def sheet(workbook: LocalWorkbook) -> LocalWorkbook:
    workbook.append(CHANNELS, [
        {CH_USERNAME: "@Cars_Msk", CH_TITLE: "Авто Москва", CH_PHONE: "+7 999 123-45-67", CH_SELLER: "@seller_one",
         CH_ACTIVE: "TRUE"},
        {CH_USERNAME: "https://t.me/AutoSpb", CH_ACTIVE: "FALSE"},
        {CH_USERNAME: "https://t.me/+AbCdEf_123"},  # invite link, active flag left blank
        {},  # an empty row in the middle
        {CH_USERNAME: "@"},
    ])
    return workbook


def test_adds_channels_and_writes_the_date_added(session: Session, sheet: LocalWorkbook) -> None:
    result = sync_channels(session, sheet, now=NOW)
    assert result.added == 3 and result.updated == 0 and result.deactivated == 0
    assert result.total == 3 and result.skipped == 1 and result.invalid == 0
    db = channels(session)
    assert set(db) == {"cars_msk", "autospb", "https://t.me/+AbCdEf_123"}
    msk = db["cars_msk"]
    assert (msk.title, msk.seller_phone, msk.seller_username, msk.is_active) == (
        "Авто Москва", "+7 999 123-45-67", "seller_one", True)
    assert db["autospb"].is_active is False and db["autospb"].title is None
    assert db["https://t.me/+AbCdEf_123"].is_active is True  # blank "Активен" = active
    assert msk.created_at == NOW
    rows = sheet.read(CHANNELS)
    assert [r[CH_ADDED] for r in rows if r.cell(CH_USERNAME) != "@"] == ["2025-03-04 10:00:00"] * 3
    assert rows[0][CH_USERNAME] == "@Cars_Msk"  # the admin's cell is not rewritten


def test_invite_links_are_never_prefixed_with_at(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    assert not any(name.startswith("@") for name in channels(session))
    assert "https://t.me/+AbCdEf_123" in channels(session)


def test_second_run_writes_nothing(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    content, writes = sheet.path.read_bytes(), sheet.writes
    result = sync_channels(session, sheet, now=NOW + timedelta(minutes=1))
    assert (result.added, result.updated, result.deactivated, result.cells_written) == (0, 0, 0, 0)
    assert sheet.writes == writes and sheet.path.read_bytes() == content


def test_updates_from_the_sheet(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    sheet.update(CHANNELS, 2, {CH_TITLE: "Новое имя", CH_PHONE: "", CH_SELLER: "https://t.me/Seller2",
                               CH_ACTIVE: "false"})
    sheet.update(CHANNELS, 3, {CH_ACTIVE: "TRUE"})
    sheet.flush()
    result = sync_channels(session, sheet, now=NOW)
    assert result.updated == 2 and result.added == 0
    db = channels(session)
    msk = db["cars_msk"]
    assert (msk.title, msk.seller_phone, msk.seller_username, msk.is_active) == ("Новое имя", None, "Seller2", False)
    assert db["autospb"].is_active is True


def test_blank_title_keeps_the_database_title_and_fills_the_sheet(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    channel = channels(session)["autospb"]
    channel.title = "Авто СПб"  # e.g. learnt by the monitor
    session.commit()
    result = sync_channels(session, sheet, now=NOW)
    assert result.updated == 0 and result.cells_written == 1
    assert channels(session)["autospb"].title == "Авто СПб"
    assert sheet.read(CHANNELS)[1][CH_TITLE] == "Авто СПб"


def test_removed_rows_are_deactivated_and_come_back(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    sheet.update(CHANNELS, 2, {CH_USERNAME: "", CH_TITLE: "", CH_PHONE: "", CH_SELLER: "", CH_ACTIVE: "",
                               CH_ADDED: ""})
    sheet.flush()
    result = sync_channels(session, sheet, now=NOW)
    assert result.deactivated == 1 and result.total == 2
    assert channels(session)["cars_msk"].is_active is False  # kept, not deleted
    sheet.append(CHANNELS, [{CH_USERNAME: "t.me/cars_msk"}])
    result = sync_channels(session, sheet, now=NOW)
    assert result.updated == 1 and result.added == 0
    assert channels(session)["cars_msk"].is_active is True


def test_existing_database_spellings_are_matched(session: Session, sheet: LocalWorkbook) -> None:
    session.add(Channel(username="Cars_Msk", title="old", created_at=NOW - timedelta(days=3)))
    session.commit()
    result = sync_channels(session, sheet, now=NOW)
    assert result.added == 2 and result.updated == 1
    assert channels(session)["cars_msk"].title == "Авто Москва"
    assert sheet.read(CHANNELS)[0][CH_ADDED] == "2025-03-01 10:00:00"  # when it reached the database


def test_invalid_and_duplicate_rows_are_reported(session: Session, workbook: LocalWorkbook) -> None:
    workbook.append(CHANNELS, [{CH_USERNAME: "@good_one"}, {CH_USERNAME: "not a channel"},
                               {CH_USERNAME: "https://t.me/Good_One"}, {CH_USERNAME: "@other", CH_ACTIVE: "perhaps"}])
    result = sync_channels(session, workbook, now=NOW)
    assert result.added == 1 and result.invalid == 2 and result.duplicates == 1
    assert any("row 3" in p for p in result.problems) and any("row 4" in p for p in result.problems)
    assert set(channels(session)) == {"good_one"}


def test_rows_without_usernames_do_not_deactivate_everything(session: Session, sheet: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    for number in range(2, 7):
        sheet.update(CHANNELS, number, {CH_USERNAME: ""})
    sheet.flush()
    with pytest.raises(PermanentError, match="Username канала"):
        sync_channels(session, sheet, now=NOW)
    assert channels(session)["cars_msk"].is_active is True


def test_an_empty_sheet_deactivates_all(session: Session, sheet: LocalWorkbook, workbook: LocalWorkbook) -> None:
    sync_channels(session, sheet, now=NOW)
    empty = LocalWorkbook(workbook.path.with_name("empty.json"))
    result = sync_channels(session, empty, now=NOW)
    assert result.deactivated == 2 and result.total == 0


def test_channel_statistics_are_written_in_the_same_single_batch(session: Session, sheet: LocalWorkbook) -> None:
    from cars_bot.posts import store_post
    from cars_bot.sheets.workbook import CH_LAST_POST, CH_PUBLISHED

    sync_channels(session, sheet, now=NOW)
    msk = channels(session)["cars_msk"]
    for message_id in (7, 12, 9):
        store_post(session, channel="@cars_msk", text=f"post {message_id}", message_id=message_id)
    msk.published_posts = 2
    session.commit()
    sheet.writes = 0
    result = sync_channels(session, sheet, now=NOW)
    assert result.cells_written == 2 and sheet.writes == 1  # H and I of one row, one write
    row = next(r for r in sheet.read(CHANNELS) if r.cell(CH_USERNAME) == "@Cars_Msk")
    assert (row[CH_PUBLISHED], row[CH_LAST_POST]) == ("2", "https://t.me/cars_msk/12")
    sheet.writes = 0
    assert sync_channels(session, sheet, now=NOW).cells_written == 0 and sheet.writes == 0
