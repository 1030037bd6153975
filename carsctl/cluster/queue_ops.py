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

from typing import TYPE_CHECKING, Any

from carsctl.errors import DependencyUnavailable, UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings


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
           timeout: float = 1.0, with_scheduled: bool = True) -> dict[str, Any]:
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
    workers: dict[str, Any] = {"replied": [], "silent": [], "listeners": None}
    if with_scheduled:
        from carsctl.cluster.remote_control import broadcast, task_rows

        outcome = broadcast(app, "scheduled", {"safe": True}, timeout=timeout, settings=settings)
        for row in task_rows(outcome):
            scheduled[row["queue"]] = scheduled.get(row["queue"], 0) + 1
        workers = {"replied": sorted(outcome.replies), "silent": outcome.silent,
                   "listeners": outcome.listeners}
    rows = []
    for name in names:
        count = counts.get(name, {"ready": 0, "by_priority": {}, "unacked": 0})
        rows.append({
            "queue": name,
            "ready": count["ready"],
            "by_priority": {str(k): v for k, v in sorted(count["by_priority"].items(), reverse=True)},
            "unacked": count["unacked"],
            "scheduled": scheduled.get(name, 0) if with_scheduled else None,
            "total": count["ready"] + count["unacked"],
        })
    totals = {key: sum(row[key] or 0 for row in rows) for key in ("ready", "unacked", "scheduled", "total")}
    return {"queues": rows, "totals": totals, "workers": workers}


def purge(app: Celery, queues: list[str] | None = None, *, include_unacked: bool = False,
          settings: Settings | None = None, timeout: float = 1.0) -> dict[str, Any]:
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
    return {
        "purged": purged, "unacked_removed": removed, "total": total,
        "queues_touched": sum(1 for name in names if purged[name] or removed.get(name)),
        "revoked_task_ids": len(task_ids), "revoked_by": revoked_by,
    }


def _purge_one(conn: Any, channel: Any, name: str) -> int:
    try:
        return int(channel.queue_purge(name) or 0)
    except conn.channel_errors:  # AMQP: a queue nobody declared yet holds nothing
        return 0
