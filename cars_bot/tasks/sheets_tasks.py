"""Google Sheets tasks (queue `sheets_sync`): channel list, subscribers, daily analytics.

Thin wrappers: the work is in :mod:`cars_bot.sheets.channel_sync`, :mod:`cars_bot.sheets.subscriber_sync`
and :mod:`cars_bot.sheets.analytics`. Each run opens the workbook chosen by the settings (the Google
spreadsheet, or the local JSON workbook when Google is not configured) and one database session,
and returns the sync's typed result as a plain dict (the result backend stores JSON). Sheets rate
limits (HTTP 429) and server errors arrive as TransientError carrying Google's Retry-After, which
the base task turns into a delayed retry; a missing or refused spreadsheet is a PermanentError and
is recorded, not retried.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cars_bot.celery_app import app
from cars_bot.tasks.base import CarsTask


def _sync_with_workbook(kind: str) -> dict[str, Any]:
    """Run one sync on the configured workbook and the database, recorded for `carsctl sheets status`;
    its result as a dict."""
    from cars_bot.config import get_settings
    from cars_bot.db.session import session_factory
    from cars_bot.sheets.admin import SyncKind, run_recorded
    from cars_bot.sheets.backends import open_workbook

    workbook = open_workbook(get_settings())
    return dataclasses.asdict(run_recorded(SyncKind(kind), session_factory(), workbook))


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.sheets_tasks.sync_channels_task",
          soft_time_limit=30, time_limit=60)
def sync_channels_task(self: CarsTask) -> dict[str, Any]:
    """Sheet "Каналы для мониторинга" -> channels: add, update, deactivate removed (no Telegram calls); the
    filters of "Настройки фильтров"; then the queue "Очередь публикаций" (moderation decisions)."""
    result = _sync_with_workbook("channels")
    _sync_with_workbook("queue")  # every minute with the channels, without an entry of its own in the schedule
    return result


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.sheets_tasks.sync_subscribers_task",
          soft_time_limit=60, time_limit=90)
def sync_subscribers_task(self: CarsTask) -> dict[str, Any]:
    """Subscribers both ways: admin edits -> database, database state (expiry) -> sheet, new users appended."""
    return _sync_with_workbook("subscribers")


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.sheets_tasks.update_analytics_task",
          soft_time_limit=90, time_limit=120)
def update_analytics_task(self: CarsTask) -> dict[str, Any]:
    """Refresh today's (UTC) row of "Аналитика"; one row per day."""
    return _sync_with_workbook("analytics")


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.sheets_tasks.sync_queue_task",
          soft_time_limit=30, time_limit=60)
def sync_queue_task(self: CarsTask) -> dict[str, Any]:
    """"Очередь публикаций" alone (sync_channels_task runs it too): apply the admins' APPROVED/REJECTED
    (MODERATION=manual), list pending and published posts."""
    return _sync_with_workbook("queue")
