"""The monitor's Telethon client: its own session (TELEGRAM_MONITOR_SESSION_STRING), never the
publisher's (prior-system.md section 10, defect 1: one session per process).

`MONITOR_CLIENT_FACTORY=module:function` replaces the client for tests (a fake at the network
boundary, so that `carsctl monitor start|status|stop` can be tested as processes without Telegram).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cars_bot.config import Settings

NOT_CONFIGURED = "not configured: set TELEGRAM_API_ID, TELEGRAM_API_HASH and TELEGRAM_MONITOR_SESSION_STRING"


def monitor_configured(settings: Settings) -> bool:
    """Are the monitor's three credentials set?"""
    return bool(settings.telegram_api_id and settings.telegram_api_hash and settings.telegram_monitor_session_string)


SHARED_SESSION = ("TELEGRAM_MONITOR_SESSION_STRING is the publisher's session (TELEGRAM_SESSION_STRING): give the "
                  "monitor a session of its own (two processes on one session conflict over its auth key)")


def session_problem(settings: Settings) -> str | None:
    """Why the monitor cannot start with these settings (not configured, the publisher's session, or a
    malformed session string), or None."""
    if not monitor_configured(settings):
        return NOT_CONFIGURED
    if settings.telegram_monitor_session_string == settings.telegram_session_string:
        return SHARED_SESSION
    from cars_bot.publishing.telegram_client import validate_session_string

    invalid = validate_session_string(settings.telegram_monitor_session_string)
    return f"TELEGRAM_MONITOR_SESSION_STRING is invalid: {invalid}" if invalid else None


def make_client(settings: Settings) -> Any:
    """A Telethon client on the monitor's session (not connected yet).

    Updates are handled one at a time in order (an album's items arrive in sequence); Telethon's own
    reconnect and catch-up are off, because the monitor reconnects with its own backoff and catches
    up from the positions in the database.
    """
    if settings.monitor_client_factory:
        module, _, name = settings.monitor_client_factory.partition(":")
        return getattr(importlib.import_module(module), name)(settings)
    from telethon import TelegramClient
    from telethon.sessions import StringSession

    return TelegramClient(StringSession(settings.telegram_monitor_session_string), settings.telegram_api_id,
                          settings.telegram_api_hash, sequential_updates=True, auto_reconnect=False,
                          catch_up=False, connection_retries=1, flood_sleep_threshold=0)
