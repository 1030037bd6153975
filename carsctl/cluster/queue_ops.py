"""Queue depth and purge, counted the way the broker really stores messages.

On Redis a queue is a base list plus one sub-list per priority step (`ai_processing`,
`ai_processing:1` ... `ai_processing:9`, with this project's `sep` and `priority_steps`), and messages
delivered to a worker but not yet acknowledged sit in the `unacked` hash until they are acked or, after
the visibility timeout, restored. ETA/countdown tasks are among those: a worker holds them until they
are due. Everything here reads the layout from the app's own kombu channel (`cars_bot.broker`), so the
transport options the producers used are the ones counted and purged. On other brokers the ready count
comes from a passive queue declare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carsctl.errors import DependencyUnavailable, UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.broker import QueueDepth
    from cars_bot.config import Settings


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue's depth as `queues` and `status` show it."""

    queue: str
    ready: int
    by_priority: dict[str, int]   # urgency ("9" .. "0", most urgent first) -> ready messages
    unacked: int                  # delivered to a worker, not acknowledged: back in the queue if it dies
    scheduled: int | None         # ETA tasks the workers hold (a part of unacked); None when not asked
    total: int                    # ready + unacked


@dataclass(frozen=True, slots=True)
class QueueTotals:
    """The sums over the queues shown."""

    ready: int
    unacked: int
    scheduled: int
    total: int


@dataclass(frozen=True, slots=True)
class Repliers:
    """Which workers answered the `scheduled` broadcast (ETA counts are only as complete as this)."""

    replied: list[str]
    silent: list[str]
    listeners: int | None         # None when no worker was asked, or the broker cannot tell


@dataclass(frozen=True, slots=True)
class QueueReport:
    """`carsctl queues`: a row per queue, the totals, and which workers reported their ETA tasks."""

    queues: list[QueueRow]
    totals: QueueTotals
    workers: Repliers


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge deleted, per queue, and which workers were told to revoke the unacked tasks."""

    purged: dict[str, int]            # ready messages deleted, per queue
    unacked_removed: dict[str, int]   # unacked entries deleted, per queue (--include-unacked)
    total: int
    queues_touched: int
    revoked_task_ids: int
    revoked_by: list[str]


def queue_row(name: str, depth: QueueDepth | None, scheduled: int | None = None) -> QueueRow:
    """A queue's broker depth (None: the broker knows nothing of it) as a row, priorities keyed as text."""
    ready, unacked = (depth.ready, depth.unacked) if depth else (0, 0)
    by_priority = {str(urgency): count for urgency, count in depth.by_priority.items()} if depth else {}
    return QueueRow(queue=name, ready=ready, by_priority=by_priority, unacked=unacked, scheduled=scheduled,
                    total=ready + unacked)


def known_queues(app: Celery) -> list[str]:
    """Every queue the app declares, in declaration order."""
    return list(app.amqp.queues.keys())


def check_queue_names(app: Celery, names: list[str] | None) -> list[str]:
    """The queues to act on: `names` validated against the app's queues (all of them when empty)."""
    known = known_queues(app)
    if not names:
        return known
    from difflib import get_close_matches

    for name in names:
        if name not in known:
            close = get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"known queues: {', '.join(known)}"
            raise UsageError(f"unknown queue {name!r}", hint=hint)
    return list(dict.fromkeys(names))


def depths(app: Celery, queues: list[str] | None = None, *, settings: Settings | None = None,
           timeout: float = 1.0, with_scheduled: bool = True) -> QueueReport:
    """Per queue: ready (by priority), unacked (held by workers), scheduled (ETA, a part of unacked).

    `scheduled` is asked of the running workers (an early-returning broadcast; nothing is waited for
    when no worker runs). Totals and which workers answered are included.
    """
    from cars_bot.broker import queue_depths
    from carsctl.cluster.remote_control import connected

    names = check_queue_names(app, queues)
    with connected(app):  # queue_depths would retry for seconds against a broker that is down
        counts = queue_depths(app, names)
    scheduled: dict[str, int] = {}
    workers = Repliers(replied=[], silent=[], listeners=None)
    if with_scheduled:
        from carsctl.cluster.remote_control import scheduled as scheduled_tasks
        from carsctl.cluster.remote_control import task_rows

        outcome = scheduled_tasks(app, timeout=timeout, settings=settings)  # revoked ones left out
        for row in task_rows(outcome):
            if row.queue is not None:
                scheduled[row.queue] = scheduled.get(row.queue, 0) + 1
        workers = Repliers(replied=sorted(outcome.replies), silent=outcome.silent, listeners=outcome.listeners)
    rows = [queue_row(name, counts.get(name), scheduled.get(name, 0) if with_scheduled else None) for name in names]
    totals = QueueTotals(ready=sum(r.ready for r in rows), unacked=sum(r.unacked for r in rows),
                         scheduled=sum(r.scheduled or 0 for r in rows), total=sum(r.total for r in rows))
    return QueueReport(queues=rows, totals=totals, workers=workers)


def purge(app: Celery, queues: list[str] | None = None, *, include_unacked: bool = False,
          settings: Settings | None = None, timeout: float = 1.0) -> PurgeResult:
    """Delete the ready messages of `queues` (every priority sub-list) and, optionally, their unacked ones.

    With `include_unacked`, the queues' entries of the `unacked` hash (and its index) are deleted too,
    so a dead worker's messages are not restored later, and the running workers are told to revoke
    those task ids, so tasks they prefetched are discarded instead of run (a task already running is
    not interrupted).
    """
    from cars_bot.broker import UnackedLockHeld, remove_unacked
    from carsctl.cluster.remote_control import broadcast, connected

    names = check_queue_names(app, queues)
    purged: dict[str, int] = {}
    removed: dict[str, int] = {}
    task_ids: list[str] = []
    with connected(app, write=True) as conn:
        channel = conn.default_channel
        for name in names:
            purged[name] = _purge_one(conn, channel, name)
        if include_unacked:
            try:
                removed, task_ids = remove_unacked(channel, set(names))
            except UnackedLockHeld as error:
                raise DependencyUnavailable(str(error), hint="try again in a few seconds") from None
    revoked_by: list[str] = []
    if task_ids:
        outcome = broadcast(app, "revoke", {"task_id": task_ids, "terminate": False},
                            timeout=timeout, settings=settings)
        revoked_by = sorted(outcome.replies)
    total = sum(purged.values()) + sum(removed.values())
    return PurgeResult(purged=purged, unacked_removed=removed, total=total,
                       queues_touched=sum(1 for name in names if purged[name] or removed.get(name)),
                       revoked_task_ids=len(task_ids), revoked_by=revoked_by)


def _purge_one(conn: Any, channel: Any, name: str) -> int:
    try:
        return int(channel.queue_purge(name) or 0)
    except conn.channel_errors:  # AMQP: a queue nobody declared yet holds nothing
        return 0


@dataclass(frozen=True, slots=True)
class UnconsumedQueue:
    """A queue with messages waiting and no running worker consuming it: they wait forever."""

    queue: str
    ready: int
    fix: str


def queue_consumers(app: Celery, *, nodes: list[str] | None = None, timeout: float = 1.0,
                    settings: Settings | None = None) -> dict[str, list[str]]:
    """Queue name -> the running worker nodes consuming it (one early-returning `active_queues`)."""
    from carsctl.cluster.remote_control import broadcast

    consumers: dict[str, list[str]] = {}
    outcome = broadcast(app, "active_queues", destination=nodes, timeout=timeout, settings=settings)
    for node, queues in sorted(outcome.replies.items()):
        for queue in queues or []:
            consumers.setdefault(queue.get("name"), []).append(node)
    return consumers


def unconsumed(rows: list[QueueRow], consumers: dict[str, list[str]], *, any_worker: bool) -> list[UnconsumedQueue]:
    """The queues among `rows` whose ready messages no running worker consumes, each with its fix."""
    return [UnconsumedQueue(queue=row.queue, ready=row.ready, fix=consumer_fix(row.queue, any_worker=any_worker))
            for row in rows if row.ready and not consumers.get(row.queue)]


def consumer_fix(queue: str, *, any_worker: bool) -> str:
    """How to get `queue` consumed: a new node for it, or (when workers run) one of them taking it on."""
    start = f"carsctl worker start {queue.split('_', 1)[0]} -Q {queue}"
    return f"{start}, or carsctl control add-consumer {queue}" if any_worker else start

