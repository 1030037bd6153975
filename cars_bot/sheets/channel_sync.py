"""Channels sync: the sheet "Каналы для мониторинга" owns the list of monitored channels.

Rules (the write order common to every sync is in :mod:`cars_bot.sheets`):

* Column B is the key, normalised: "@Name", "https://t.me/Name", "t.me/s/Name/123" -> "name".
  Invite links ("https://t.me/+hash", ".../joinchat/hash") are kept exactly as typed and are never
  prefixed with "@". A row whose B is not a channel is reported and skipped; the first of two rows
  naming the same channel wins.
* Title (C), seller phone (D), seller username (E) and the active flag (F; blank = active) are
  copied to the database. A blank title keeps the database title (titles are never fetched from
  Telegram); blank D/E clear the contact.
* A channel whose row was removed from the sheet is DEACTIVATED (never deleted); it comes back
  when its row does. A sheet without a "Username канала" header is an error, not an empty list.
* Written back, in ONE batch: "Дата добавления" (and the title, when C is blank and the database
  knows one) for rows where that cell is blank, and the channel's statistics, "Опубликовано" (posts
  published from it) and "Последний пост" (the link of its newest source post), where they differ
  from the sheet -- so a second run with nothing new writes nothing.
* Then the filters of "Настройки фильтров" are read (:mod:`cars_bot.sheets.filter_sync`).

Requests to Google per run: 1 spreadsheet metadata, 1 read of each of the two worksheets, and at
most 1 batch write (none when no cell changed): 3 or 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cars_bot.db.models import Channel, Post, utcnow
from cars_bot.errors import PermanentError
from cars_bot.sheets.cells import (
    format_sheet_datetime,
    normalize_channel_username,
    normalize_seller_username,
    note_problem,
    parse_bool,
    parse_count,
    to_utc,
)
from cars_bot.sheets.filter_sync import FilterSyncResult, sync_filters
from cars_bot.sheets.workbook import (
    CH_ACTIVE,
    CH_ADDED,
    CH_LAST_POST,
    CH_PHONE,
    CH_PUBLISHED,
    CH_SELLER,
    CH_TITLE,
    CH_USERNAME,
    CHANNELS,
    CellValue,
    Row,
    Workbook,
)


@dataclass(frozen=True, slots=True)
class ChannelSyncResult:
    """What one channels sync did: counts, up to 20 problem descriptions, and when it ran (ISO UTC)."""

    added: int
    updated: int
    deactivated: int
    total: int  # channels listed in the sheet
    skipped: int  # rows without a channel
    invalid: int
    duplicates: int
    cells_written: int
    problems: tuple[str, ...]
    synced_at: str
    filters: FilterSyncResult


def sync_channels(session: Session, workbook: Workbook, now: datetime | None = None) -> ChannelSyncResult:
    """Make the database's channels match the sheet "Каналы для мониторинга" (see the module docstring)."""
    now = to_utc(now or utcnow())
    workbook.ensure_sheet(CHANNELS)
    rows = workbook.read(CHANNELS)
    problems: list[str] = []
    counts = {"added": 0, "updated": 0, "deactivated": 0, "total": 0, "skipped": 0, "invalid": 0,
              "duplicates": 0}

    listed: dict[str, tuple[Row, bool]] = {}
    for row in rows:
        try:
            username = normalize_channel_username(row.cell(CH_USERNAME))
            active = parse_bool(row.cell(CH_ACTIVE))
        except ValueError as exc:
            counts["invalid"] += 1
            note_problem(problems, f"{CHANNELS} row {row.number}: {exc}")
            continue
        if username is None:
            counts["skipped"] += 1
            continue
        if username in listed:
            counts["duplicates"] += 1
            note_problem(problems, f"{CHANNELS} row {row.number}: {username} is already listed in row "
                                   f"{listed[username][0].number}; this row is ignored")
            continue
        listed[username] = (row, True if active is None else active)
    counts["total"] = len(listed)
    if rows and counts["skipped"] == len(rows):
        # Rows exist but none names a channel: column B was most likely renamed or moved. Deactivating
        # every channel on that evidence would stop the whole monitor, so refuse instead.
        raise PermanentError(f"worksheet {CHANNELS!r}: none of its {len(rows)} rows has a {CH_USERNAME!r} "
                             "value; check that the header of that column is spelled exactly so")

    existing: dict[str, Channel] = {}
    for channel in session.scalars(select(Channel).order_by(Channel.id)):
        try:
            key = normalize_channel_username(channel.username) or channel.username
        except ValueError:
            key = channel.username
        existing.setdefault(key, channel)

    write_back: list[tuple[Row, Channel]] = []
    for username, (row, active) in listed.items():
        title = row.cell(CH_TITLE)[:255] or None
        phone = row.cell(CH_PHONE)[:32] or None
        seller = normalize_seller_username(row.cell(CH_SELLER))
        channel = existing.pop(username, None)
        if channel is None:
            channel = Channel(username=username, title=title, is_active=active, seller_phone=phone,
                              seller_username=seller, created_at=now, updated_at=now)
            session.add(channel)
            counts["added"] += 1
        else:
            wanted: dict[str, Any] = {"username": username, "is_active": active, "seller_phone": phone,
                                      "seller_username": seller}
            if title:
                wanted["title"] = title
            changed = False
            for attr, value in wanted.items():
                if getattr(channel, attr) != value:
                    setattr(channel, attr, value)
                    changed = True
            counts["updated"] += changed
        write_back.append((row, channel))

    for channel in existing.values():  # rows removed from the sheet
        if channel.is_active:
            channel.is_active = False
            counts["deactivated"] += 1

    session.flush()
    session.commit()

    last_links = _last_post_links(session)
    for row, channel in write_back:
        cells: dict[str, CellValue] = {}
        if not row.cell(CH_ADDED):
            cells[CH_ADDED] = format_sheet_datetime(channel.created_at or now)
        if not row.cell(CH_TITLE) and channel.title:
            cells[CH_TITLE] = channel.title
        if parse_count(row.cell(CH_PUBLISHED)) != channel.published_posts:
            cells[CH_PUBLISHED] = channel.published_posts
        last_link = last_links.get(channel.id)
        if last_link and row.cell(CH_LAST_POST) != last_link:
            cells[CH_LAST_POST] = last_link
        if cells:
            workbook.update(CHANNELS, row.number, cells)
    cells_written = workbook.flush()
    filters = sync_filters(session, workbook, now)
    return ChannelSyncResult(**counts, cells_written=cells_written, problems=tuple(problems),
                             synced_at=now.isoformat(), filters=filters)


def _last_post_links(session: Session) -> dict[int, str]:
    """Channel id -> the link of its newest source post (highest message id)."""
    newest = (select(Post.channel_id, func.max(Post.message_id).label("message_id"))
              .group_by(Post.channel_id).subquery())
    query = (select(Post.channel_id, Post.link)
             .join(newest, (Post.channel_id == newest.c.channel_id) & (Post.message_id == newest.c.message_id)))
    return {channel_id: link for channel_id, link in session.execute(query) if link}
