"""Retry-After parsing shared by the OpenAI and Google Sheets adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from requests.structures import CaseInsensitiveDict

from cars_bot.retry_after import retry_after_seconds

NOW = datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # milliseconds win
    ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),  # an unreadable ms value falls back to seconds
    ({"Retry-After": "-3"}, 0.0),
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": ""}, None),
    ({"Content-Type": "application/json"}, None),
    ({}, None),
    (None, None),
])
def test_header_forms(headers: dict[str, str] | None, expected: float | None) -> None:
    assert retry_after_seconds(headers, now=NOW) == expected


def test_http_date_is_counted_from_now() -> None:
    assert retry_after_seconds({"Retry-After": format_datetime(NOW + timedelta(seconds=30), usegmt=True)},
                               now=NOW) == 30.0
    assert retry_after_seconds({"Retry-After": format_datetime(NOW - timedelta(minutes=5), usegmt=True)},
                               now=NOW) == 0.0


def test_case_insensitive_header_maps_work_too() -> None:
    assert retry_after_seconds(CaseInsensitiveDict({"RETRY-AFTER": "4"})) == 4.0
