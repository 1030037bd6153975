"""Analytics sync: one row per UTC day in "Аналитика", updated in place (appended when missing).

The hourly run refreshes today's row, so the sheet shows the day so far; a row left unchanged is
not written. Revenue is always 0: this system takes no payments. The AI cost is the day's sum of
``ai_usage.cost_usd`` (USD, four decimals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cars_bot.db.models import AIUsage, ContactRequest, Post, Subscription, User, utcnow
from cars_bot.sheets.cells import parse_count, parse_sheet_datetime, to_utc
from cars_bot.sheets.workbook import (
    AN_ACTIVE_SUBS,
    AN_AI_COST,
    AN_CONTACTS,
    AN_DATE,
    AN_NEW_USERS,
    AN_PROCESSED,
    AN_PUBLISHED,
    AN_REVENUE,
    ANALYTICS,
    DATE_FORMAT,
    CellValue,
    Row,
    Workbook,
)


class AnalyticsAction(StrEnum):
    """What :func:`update_analytics` did to today's row."""

    APPENDED = "appended"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class DailyFigures:
    """One UTC day's figures, as the columns of "Аналитика" show them."""

    posts_processed: int
    posts_published: int
    new_users: int
    active_subscriptions: int
    contact_requests: int
    revenue: int
    ai_cost_usd: float

    def cells(self) -> dict[str, CellValue]:
        """The figures keyed by their "Аналитика" headers."""
        return {
            AN_PROCESSED: self.posts_processed,
            AN_PUBLISHED: self.posts_published,
            AN_NEW_USERS: self.new_users,
            AN_ACTIVE_SUBS: self.active_subscriptions,
            AN_CONTACTS: self.contact_requests,
            AN_REVENUE: self.revenue,
            AN_AI_COST: self.ai_cost_usd,
        }


@dataclass(frozen=True, slots=True)
class AnalyticsUpdate(DailyFigures):
    """The figures today's row now holds, the day (ISO date) and what was done to its row."""

    date: str
    action: AnalyticsAction


def daily_analytics(session: Session, now: datetime | None = None) -> DailyFigures:
    """Today's figures (UTC day of `now`).

    Posts processed and published today, users registered today, subscriptions active now (flag set
    and end still ahead), contact requests today, and revenue, which is always 0: this system has no
    payments.
    """
    now = to_utc(now or utcnow())
    start = datetime.combine(now.date(), time.min, tzinfo=UTC)
    end = start + timedelta(days=1)

    def count(column: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count(column)).where(*where)) or 0)

    return DailyFigures(
        posts_processed=count(Post.id, Post.processed_at >= start, Post.processed_at < end),
        posts_published=count(Post.id, Post.published_at >= start, Post.published_at < end),
        new_users=count(User.id, User.created_at >= start, User.created_at < end),
        active_subscriptions=count(Subscription.id, Subscription.is_active.is_(True), Subscription.ends_at > now),
        contact_requests=count(ContactRequest.id, ContactRequest.requested_at >= start,
                               ContactRequest.requested_at < end),
        revenue=0,
        ai_cost_usd=round(float(session.scalar(select(func.coalesce(func.sum(AIUsage.cost_usd), 0.0)).where(
            AIUsage.created_at >= start, AIUsage.created_at < end)) or 0.0), 4),
    )


def _same(cell: str, value: CellValue) -> bool:
    """Whether a cell already shows `value` (a count, or the AI cost in USD to four decimals)."""
    if isinstance(value, float):
        try:
            return abs(float(cell.strip().replace(",", ".") or "nan") - value) < 0.00005
        except ValueError:
            return False
    return parse_count(cell) == value


def _row_date(row: Row) -> date | None:
    try:
        moment = parse_sheet_datetime(row.cell(AN_DATE))
    except ValueError:
        return None
    return moment.date() if moment else None


def update_analytics(session: Session, workbook: Workbook, now: datetime | None = None) -> AnalyticsUpdate:
    """Write today's figures to "Аналитика": update today's row if there is one, else append it.

    One row per UTC day, so the hourly run refreshes the same row; an unchanged row is not written.
    """
    now = to_utc(now or utcnow())
    today = now.date()
    figures = daily_analytics(session, now)
    cells = figures.cells()
    workbook.ensure_sheet(ANALYTICS)
    row = next((r for r in workbook.read(ANALYTICS) if _row_date(r) == today), None)
    if row is None:
        appended = workbook.append(ANALYTICS, [{AN_DATE: today.strftime(DATE_FORMAT), **cells}], unique_by=AN_DATE)
        action = AnalyticsAction.APPENDED if appended else AnalyticsAction.UNCHANGED
    else:
        changed = {h: v for h, v in cells.items() if not _same(row.cell(h), v)}
        if changed:
            workbook.update(ANALYTICS, row.number, changed)
            workbook.flush()
        action = AnalyticsAction.UPDATED if changed else AnalyticsAction.UNCHANGED
    return AnalyticsUpdate(date=today.isoformat(), action=action, **asdict(figures))
