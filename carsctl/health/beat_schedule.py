"""`carsctl schedule`: the periodic tasks beat sends, with their last and next run times.

Times come from beat's heartbeat when beat runs (it records every entry's last and next run); otherwise
the next run of a crontab entry is computed from the schedule, and an interval entry has none (it runs
one interval after beat starts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings
    from carsctl.health.overview import BeatInfo


class NextRunSource(StrEnum):
    """Where an entry's next run time comes from."""

    BEAT = "beat"             # beat's heartbeat: what the running beat will do
    COMPUTED = "computed"     # the schedule itself, from the last run (or now)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One periodic task: what it sends, where, when it last ran and when it runs next."""

    name: str
    task: str
    alias: str
    schedule: str                     # "every 60s" / "cron 0 * * * *"
    queue: str | None
    priority: int | None
    last_run_at: datetime | None
    next_run_at: datetime | None      # None: an interval entry, one interval after beat starts
    next_from: NextRunSource | None


@dataclass(frozen=True, slots=True)
class BeatSchedule:
    """The beat schedule as live data, with beat's state (its raw heartbeat left out: the entries hold it)."""

    beat: BeatInfo
    entries: list[ScheduleEntry]


def schedule_entries(app: Celery, settings: Settings) -> BeatSchedule:
    """The beat schedule with last and next run times (from beat's heartbeat, or computed)."""
    from celery.schedules import maybe_schedule

    from cars_bot.broker import describe_schedule, is_crontab
    from cars_bot.task_names import task_alias
    from carsctl.cluster.remote_control import connected
    from carsctl.health.overview import beat_info, parse_time

    with connected(app):  # last runs are in the broker: without it they would all read "never"
        pass
    beat = beat_info(app, settings)
    seen = beat.heartbeat.entries if beat.heartbeat else {}
    now = datetime.now(UTC)
    rows = []
    for name, spec in (app.conf.beat_schedule or {}).items():
        schedule = maybe_schedule(spec["schedule"], app=app)
        entry = seen.get(name) or {}
        last = parse_time(entry.last_run_at) if entry else None
        upcoming = parse_time(entry.next_run_at) if entry else None
        source = NextRunSource.BEAT if upcoming else NextRunSource.COMPUTED
        if upcoming is None and (last is not None or is_crontab(schedule)):
            upcoming = now + schedule.remaining_estimate(last or now)
        route = app.amqp.router.route(dict(spec.get("options") or {}), spec["task"], (), {}, None)
        queue = route.get("queue")
        rows.append(ScheduleEntry(
            name=name, task=spec["task"], alias=task_alias(spec["task"]), schedule=describe_schedule(spec["schedule"]),
            queue=getattr(queue, "name", queue), priority=route.get("priority"), last_run_at=last,
            next_run_at=upcoming, next_from=source if upcoming else None))
    return BeatSchedule(beat=replace(beat, heartbeat=None), entries=rows)
