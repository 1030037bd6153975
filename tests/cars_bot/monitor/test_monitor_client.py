"""The monitor's Telethon client is built on its own session, never the publisher's (no network)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest


def _session(fill: int) -> str:
    from telethon.crypto import AuthKey
    from telethon.sessions import StringSession

    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(bytes([fill]) * 256)
    return session.save()


def test_the_client_uses_the_monitors_own_session(settings: Any) -> None:
    from cars_bot.monitor.client import make_client, session_problem

    monitor, publisher = _session(1), _session(2)
    configured = replace(settings, telegram_api_id=12345, telegram_api_hash="0123456789abcdef",
                         telegram_monitor_session_string=monitor, telegram_session_string=publisher)
    assert session_problem(configured) is None
    client = make_client(configured)
    assert client.session.save() == monitor
    assert client.flood_sleep_threshold == 0  # every FloodWait reaches the monitor's limiter


@pytest.mark.parametrize(("changes", "problem"), [
    ({"telegram_monitor_session_string": None}, "not configured: set TELEGRAM_API_ID"),
    ({"telegram_session_string": "SAME"}, "is the publisher's session"),
])
def test_what_the_monitor_refuses_to_start_with(settings: Any, changes: dict[str, Any], problem: str) -> None:
    from cars_bot.monitor.client import session_problem

    configured = replace(settings, telegram_api_id=1, telegram_api_hash="x", telegram_monitor_session_string="SAME",
                         telegram_session_string=None)
    assert problem in (session_problem(replace(configured, **changes)) or "")
