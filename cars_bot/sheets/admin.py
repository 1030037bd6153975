"""The spreadsheet operated by hand (`carsctl sheets init|status|sync`) and the record of every sync.

- :func:`init_workbook` creates the missing worksheets and the headers they lack, and adds the filter
  rows "Настройки фильтров" lacks (blank values), without touching any existing cell.
- :func:`run_sync` runs one sync now (the same function the scheduled task runs) and records it.
- :func:`record_sync` keeps, per worksheet, the time of the last successful sync and the last error
  (table ``sheet_syncs``); the Sheets tasks call it too, so :func:`sheets_status` shows what the
  workers did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cars_bot.sheets.workbook import ANALYTICS, CHANNELS, FILTERS, LAYOUT, QUEUE, SUBSCRIBERS, Workbook

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cars_bot.config import Settings

logger = logging.getLogger("cars_bot.sheets")


class SyncKind(StrEnum):
    """A sync that `carsctl sheets sync` can run."""

    CHANNELS = "channels"  # "Каналы для мониторинга" and "Настройки фильтров"
    SUBSCRIBERS = "subscribers"
    ANALYTICS = "analytics"
    QUEUE = "queue"  # "Очередь публикаций": moderation decisions, published posts listed


#: The worksheets each sync reads or writes.
SYNC_WORKSHEETS: dict[SyncKind, tuple[str, ...]] = {
    SyncKind.CHANNELS: (CHANNELS, FILTERS),
    SyncKind.SUBSCRIBERS: (SUBSCRIBERS,),
    SyncKind.ANALYTICS: (ANALYTICS,),
    SyncKind.QUEUE: (QUEUE,),
}


def sync_function(kind: SyncKind) -> Callable[..., Any]:
    """The sync function of `kind`: (session, workbook) -> its typed result."""
    if kind is SyncKind.CHANNELS:
        from cars_bot.sheets.channel_sync import sync_channels

        return sync_channels
    if kind is SyncKind.SUBSCRIBERS:
        from cars_bot.sheets.subscriber_sync import sync_subscribers

        return sync_subscribers
    if kind is SyncKind.QUEUE:
        from functools import partial

        from cars_bot.sheets.queue_sync import sync_queue

        return partial(sync_queue, enqueue_publish=_send_publish)
    from cars_bot.sheets.analytics import update_analytics

    return update_analytics


def _send_publish(post_id: int) -> None:
    """Send publish_post_task for an approved post (by name, to the publishing queue)."""
    from cars_bot.celery_app import app
    from cars_bot.task_names import PUBLISH_POST

    app.send_task(PUBLISH_POST, args=[post_id])


def backend_name(workbook: Workbook) -> str:
    """"google" or "local: <path>", for reports."""
    path = getattr(workbook, "path", None)
    return f"local: {path}" if path is not None else "google"


@dataclass(frozen=True, slots=True)
class SheetsInit:
    """What `sheets init` did: worksheets created, worksheets that got missing headers, filter rows added."""

    backend: str
    created: tuple[str, ...]
    headers_added: tuple[str, ...]
    filter_rows_added: int


def init_workbook(workbook: Workbook) -> SheetsInit:
    """Create the missing worksheets and headers, and the missing filter rows; existing cells stay."""
    from cars_bot.sheets.filter_sync import missing_filter_rows

    existing = set(workbook.worksheets())
    created, completed = [], []
    for sheet in LAYOUT:
        changed = workbook.ensure_sheet(sheet)
        if sheet not in existing:
            created.append(sheet)
        elif changed:
            completed.append(sheet)
    rows = missing_filter_rows(workbook)
    added = workbook.append(FILTERS, rows) if rows else 0
    return SheetsInit(backend=backend_name(workbook), created=tuple(created), headers_added=tuple(completed),
                      filter_rows_added=added)


@dataclass(frozen=True, slots=True)
class WorksheetStatus:
    """One worksheet: present in the workbook, its data rows, its last sync and last error."""

    worksheet: str
    present: bool
    rows: int | None
    synced_by: str | None  # the `carsctl sheets sync` kind that covers it (None: written by the bot only)
    last_sync_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True, slots=True)
class SheetsStatus:
    """Every worksheet of the layout, and which workbook was looked at."""

    backend: str
    worksheets: tuple[WorksheetStatus, ...]


def sheets_status(session: Session, workbook: Workbook) -> SheetsStatus:
    """Each worksheet of the layout: in the workbook or not, its rows, its last sync and error."""
    from sqlalchemy import select

    from cars_bot.db.models import SheetSync

    present = set(workbook.worksheets())
    syncs = {s.worksheet: s for s in session.scalars(select(SheetSync))}
    kinds = {sheet: kind.value for kind, sheets in SYNC_WORKSHEETS.items() for sheet in sheets}
    result = []
    for sheet in LAYOUT:
        sync = syncs.get(sheet)
        result.append(WorksheetStatus(
            worksheet=sheet, present=sheet in present,
            rows=len(workbook.read(sheet)) if sheet in present else None, synced_by=kinds.get(sheet),
            last_sync_at=sync.last_sync_at if sync else None, last_error=sync.last_error if sync else None,
            last_error_at=sync.last_error_at if sync else None))
    return SheetsStatus(backend=backend_name(workbook), worksheets=tuple(result))


def record_sync(session: Session, worksheets: tuple[str, ...], error: str | None = None,
                now: datetime | None = None) -> None:
    """Remember a sync of `worksheets`: its time when it succeeded, else its error; commits."""
    from cars_bot.db.models import SheetSync, utcnow

    now = now or utcnow()
    for sheet in worksheets:
        row = session.get(SheetSync, sheet)
        if row is None:
            row = SheetSync(worksheet=sheet)
            session.add(row)
        if error is None:
            row.last_sync_at, row.last_error = now, None
        else:
            row.last_error, row.last_error_at = error[:2000], now
    session.commit()


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One sync run now: which, on which workbook, and the sync's own result."""

    kind: SyncKind
    backend: str
    result: Any  # ChannelSyncResult | SubscriberSyncResult | AnalyticsUpdate


def run_sync(kind: SyncKind, settings: Settings, workbook: Workbook | None = None) -> SyncRun:
    """Run one sync now on the configured workbook and database, and record it (errors too, re-raised)."""
    from cars_bot.db.session import session_factory
    from cars_bot.sheets.backends import open_workbook

    workbook = workbook if workbook is not None else open_workbook(settings)
    result = run_recorded(kind, session_factory(settings.database_url), workbook)
    return SyncRun(kind=kind, backend=backend_name(workbook), result=result)


def run_recorded(kind: SyncKind, sessions: Callable[[], Session], workbook: Workbook) -> Any:
    """`kind`'s sync on `workbook` in a session of `sessions`, recorded by :func:`record_sync`."""
    from cars_bot.secret_masking import mask_secrets_in

    worksheets = SYNC_WORKSHEETS[kind]
    try:
        with sessions() as session:
            result = sync_function(kind)(session, workbook)
            session.commit()
    except Exception as error:
        try:
            with sessions() as session:
                record_sync(session, worksheets, mask_secrets_in(f"{type(error).__name__}: {error}"))
        except Exception:
            logger.warning("could not record the failed %s sync", kind, exc_info=True)
        raise
    with sessions() as session:
        record_sync(session, worksheets)
    return result

