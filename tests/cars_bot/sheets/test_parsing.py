"""Cell parsing: channel usernames, flags, dates, subscription types, counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cars_bot.db.models import SubscriptionType
from cars_bot.sheets.cells import (
    format_sheet_datetime,
    is_invite_link,
    normalize_channel_username,
    normalize_seller_username,
    parse_bool,
    parse_count,
    parse_sheet_datetime,
    parse_subscription_type,
)
from cars_bot.sheets.workbook import cell_text, serial_to_text


@pytest.mark.parametrize(("raw", "expected"), [
    ("@Cars_Msk", "cars_msk"),
    ("  cars_msk ", "cars_msk"),
    ("https://t.me/AutoSpb", "autospb"),
    ("http://t.me/AutoSpb/", "autospb"),
    ("t.me/s/AutoSpb", "autospb"),
    ("https://t.me/AutoSpb/1234", "autospb"),
    ("https://telegram.me/AutoSpb", "autospb"),
    ("https://t.me/+AbCdEf_123", "https://t.me/+AbCdEf_123"),
    ("https://t.me/joinchat/AAAAAE-xyz", "https://t.me/joinchat/AAAAAE-xyz"),
    ("t.me/+AbCdEf", "t.me/+AbCdEf"),
    ("@https://t.me/+AbCdEf", "https://t.me/+AbCdEf"),
    ("", None),
    ("@", None),
])
def test_channel_usernames(raw: str, expected: str | None) -> None:
    assert normalize_channel_username(raw) == expected


@pytest.mark.parametrize("raw", ["my channel", "@ab", "https://example.com/x", "+79991234567"])
def test_bad_channel_usernames(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_channel_username(raw)


def test_invite_links_are_never_at_prefixed() -> None:
    assert is_invite_link("https://t.me/+AbC") and not is_invite_link("@abc")
    assert normalize_channel_username(" https://t.me/+AbC/ ") == "https://t.me/+AbC"


def test_seller_usernames() -> None:
    assert normalize_seller_username("@Seller") == "Seller"
    assert normalize_seller_username("https://t.me/Seller") == "Seller"
    assert normalize_seller_username("  ") is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("TRUE", True), ("true", True), ("ИСТИНА", True), ("да", True), ("1", True),
    ("FALSE", False), ("ложь", False), ("0", False), ("", None),
])
def test_flags(raw: str, expected: bool | None) -> None:
    assert parse_bool(raw) is expected


def test_bad_flag() -> None:
    with pytest.raises(ValueError):
        parse_bool("maybe")


@pytest.mark.parametrize(("raw", "expected"), [
    ("2025-10-23 12:30:05", datetime(2025, 10, 23, 12, 30, 5, tzinfo=UTC)),
    ("2025-10-23", datetime(2025, 10, 23, tzinfo=UTC)),
    ("2025-10-23 12:30", datetime(2025, 10, 23, 12, 30, tzinfo=UTC)),
    ("23.10.2025", datetime(2025, 10, 23, tzinfo=UTC)),
    ("23.10.2025 12:30:05", datetime(2025, 10, 23, 12, 30, 5, tzinfo=UTC)),
    ("2025-10-23T15:30:05+03:00", datetime(2025, 10, 23, 12, 30, 5, tzinfo=UTC)),
    ("45953", datetime(2025, 10, 23, tzinfo=UTC)),
    ("45953.5", datetime(2025, 10, 23, 12, tzinfo=UTC)),
    ("", None),
])
def test_dates(raw: str, expected: datetime | None) -> None:
    assert parse_sheet_datetime(raw) == expected


@pytest.mark.parametrize("raw", ["10/23/2025", "завтра", "2025-13-01", "-5"])
def test_bad_dates(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_sheet_datetime(raw)


def test_date_round_trip_and_serials() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert format_sheet_datetime(moment) == "2025-01-02 03:04:05"
    assert parse_sheet_datetime(format_sheet_datetime(moment)) == moment.replace(microsecond=0)
    assert format_sheet_datetime(None) == ""
    assert serial_to_text(45953) == "2025-10-23" and serial_to_text(45953.5) == "2025-10-23 12:00:00"
    with pytest.raises(ValueError, match="naive"):
        format_sheet_datetime(datetime(2025, 1, 1))


@pytest.mark.parametrize(("raw", "expected"), [
    ("FREE", SubscriptionType.FREE), ("Monthly", SubscriptionType.MONTHLY), ("YEARLY", SubscriptionType.YEARLY),
    ("yearly", SubscriptionType.YEARLY), ("", None),
])
def test_subscription_types(raw: str, expected: SubscriptionType | None) -> None:
    assert parse_subscription_type(raw) is expected


def test_bad_subscription_type() -> None:
    with pytest.raises(ValueError, match="MONTHLY"):
        parse_subscription_type("MONTLY")


def test_counts_and_cell_text() -> None:
    assert parse_count("12") == 12 and parse_count("12.0") == 12 and parse_count("1 234") == 1234
    assert parse_count("") is None and parse_count("x") is None
    assert [cell_text(v) for v in (None, True, False, 5, 5.0, 2.5, "x")] == ["", "TRUE", "FALSE", "5", "5", "2.5", "x"]
