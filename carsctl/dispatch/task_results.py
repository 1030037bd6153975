"""What became of a task id: its stored result, where it waits, waiting for it, revoking it.

A result lookup tells an unknown (or expired) id apart from a task that is still pending: with
`result_extended` a task that ran has a meta key, and one that has not run yet sits in a queue, in
the `unacked` hash or with a worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings


class TaskState(StrEnum):
    """A task's state as Celery stores it, plus UNKNOWN: nothing stored and nowhere to be found."""

    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    RETRY = "RETRY"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"
    IGNORED = "IGNORED"
    UNKNOWN = "UNKNOWN"


#: States after which nothing more happens to the task.
FINISHED = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED})


def task_state(text: str) -> TaskState | str:
    """Celery's state text as a TaskState; a custom state a task set with `update_state` stays text."""
    try:
        return TaskState(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class TaskLocation:
    """Where a task without a stored state waits (`location` None: nowhere to be found)."""

    location: str | None
    queue: str | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What is known about a task id: its stored state and result, or where it waits.

    `known` is False for an id that was never sent or whose result expired (state UNKNOWN).
    `timed_out` is True when waiting for it ended before it finished.
    """

    id: str
    state: TaskState | str
    known: bool
    location: str | None = None
    task: str | None = None
    args: Any = None
    kwargs: Any = None
    worker: str | None = None
    queue: str | None = None
    retries: int | None = None
    date_done: datetime | str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    timed_out: bool = False


class RevokeOutcome(StrEnum):
    """Where the task was when it was revoked, which says what the revoke did."""

    REMOVED_FROM_QUEUE = "removed_from_queue"  # taken out of its queue: it will not run
    HELD_BY_WORKER = "held_by_worker"  # reserved, scheduled (ETA) or running on a worker: flagged there
    DELIVERED = "delivered"  # delivered, not yet acknowledged: the worker that gets it drops it
    FINISHED = "finished"  # it had already finished: nothing to stop
    NOT_FOUND = "not_found"  # not queued, not running: workers drop it if it arrives


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """A revoke: where the task was (`outcome`, `location`), which workers acknowledged it, and the queue
    it was taken out of (if any)."""

    id: str
    terminate: bool
    outcome: RevokeOutcome
    removed_from_queue: str | None
    acknowledged_by: list[str]
    workers_listening: int | None
    location: str | None = None  # HELD_BY_WORKER/DELIVERED: where; FINISHED: its final state
    worker: str | None = None  # HELD_BY_WORKER: the node holding it


def result_info(app: Celery, task_id: str, *, settings: Settings | None = None, timeout: float = 1.0) -> TaskInfo:
    """What is known about a task id: its stored state and result, or where it waits, or UNKNOWN."""
    from cars_bot.json_data import jsonable
    from carsctl.cluster.remote_control import broker_error

    backend = app.backend
    try:
        meta = backend.get_task_meta(task_id)
        stored = meta.get("status") != "PENDING" or _has_meta_key(backend, task_id)
    except Exception as error:  # noqa: BLE001 - backend errors are transport-specific
        raise broker_error(app, error) from None
    state = task_state(meta.get("status"))
    if stored:
        return TaskInfo(
            id=task_id, state=state, known=True, task=meta.get("name"), args=meta.get("args"),
            kwargs=meta.get("kwargs"), worker=meta.get("worker"), queue=meta.get("queue"),
            retries=meta.get("retries"), date_done=meta.get("date_done"),
            result=jsonable(meta.get("result")) if state == TaskState.SUCCESS else None,
            error=_error_text(meta.get("result")) if state in (TaskState.FAILURE, TaskState.RETRY) else None,
            traceback=meta.get("traceback"))
    where = locate(app, task_id, settings=settings, timeout=timeout)
    if where.location is None:
        return TaskInfo(id=task_id, state=TaskState.UNKNOWN, known=False)
    return TaskInfo(id=task_id, state=state, known=True, location=where.location, queue=where.queue,
                    worker=where.worker)


def missing_subject(info: TaskInfo) -> str | None:
    """What a task that succeeded found missing ("post 42"), when its result says it had nothing to work
    on: process-post's `{"status": "missing"}`, publish-post's `{"post_status": "missing"}`."""
    result = info.result
    if info.state != TaskState.SUCCESS or not isinstance(result, dict):
        return None
    if "missing" not in (result.get("status"), result.get("post_status")):
        return None
    return f"post {result['post_id']}" if "post_id" in result else "its subject"


def _has_meta_key(backend: Any, task_id: str) -> bool:
    client = getattr(backend, "client", None)
    if client is None or not hasattr(backend, "get_key_for_task"):
        return True  # cannot tell: treat as known rather than call a real task unknown
    return bool(client.exists(backend.get_key_for_task(task_id)))


def _error_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, BaseException):
        from carsctl.cluster.event_stream import error_text

        return error_text(value)
    if isinstance(value, dict) and "exc_type" in value:
        return f"{value.get('exc_type')}: {' '.join(map(str, value.get('exc_message') or ()))}"
    return str(value)


def locate(app: Celery, task_id: str, *, settings: Settings | None = None, timeout: float = 1.0) -> TaskLocation:
    """Where a task without a stored state waits: a queue (ready), the unacked hash, or a worker."""
    from cars_bot.broker import find_queued, is_unacked
    from carsctl.cluster.remote_control import broadcast, connected

    with connected(app) as conn:
        queue = find_queued(conn.default_channel, app.amqp.queues, task_id)
        if queue is not None:
            return TaskLocation(f"queued in {queue}", queue=queue)
        if is_unacked(conn.default_channel, task_id):
            return TaskLocation("delivered to a worker, not yet acknowledged")

    outcome = broadcast(app, "query_task", {"ids": [task_id]}, timeout=timeout, settings=settings)
    for node, found in outcome.replies.items():
        if task_id in (found or {}):
            state, _request = found[task_id]
            return TaskLocation(f"{state} on {node}", worker=node)
    return TaskLocation(None)


def wait_for_result(app: Celery, task_id: str, timeout: float,
                    on_state: Callable[[str], None] | None = None) -> TaskInfo:
    """Wait up to `timeout` for a task to finish, reporting state changes; return result_info()."""
    from celery.exceptions import TimeoutError as CeleryTimeout
    from celery.result import AsyncResult

    result = AsyncResult(task_id, app=app)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        state = result.state
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in FINISHED:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            result.get(timeout=min(remaining, 0.5), propagate=False, disable_sync_subtasks=False)
        except CeleryTimeout:
            pass
    info = result_info(app, task_id)
    return replace(info, timed_out=info.state not in FINISHED)


def revoke(app: Celery, task_id: str, *, terminate: bool = False, settings: Settings | None = None,
           timeout: float = 1.0) -> RevokeResult:
    """Revoke one task: tell the running workers, and take its message out of its queue if it is there.

    Only the message whose task id is exactly `task_id` is touched; a string that cannot be a task id
    is refused (UsageError) before anything is sent or removed.
    """
    from carsctl.cluster.remote_control import broadcast
    from carsctl.dispatch.arguments import task_id_argument

    task_id = task_id_argument(task_id)
    removed = _remove_from_queues(app, task_id)
    before = None if removed else result_info(app, task_id, settings=settings, timeout=timeout)
    outcome = broadcast(app, "revoke", {"task_id": task_id, "terminate": terminate, "signal": "SIGTERM"},
                        timeout=timeout, settings=settings)
    if removed:
        where, location = RevokeOutcome.REMOVED_FROM_QUEUE, None
    elif before is None or not before.known:
        where, location = RevokeOutcome.NOT_FOUND, None
    elif before.location is None:  # a stored state: it ran (or is running, with result_extended STARTED)
        if before.state in FINISHED:
            where, location = RevokeOutcome.FINISHED, str(before.state)
        else:
            where = RevokeOutcome.HELD_BY_WORKER
            location = f"{before.state} on {before.worker}" if before.worker else str(before.state)
    elif before.worker is not None:
        where, location = RevokeOutcome.HELD_BY_WORKER, before.location
    else:
        where, location = RevokeOutcome.DELIVERED, before.location
    return RevokeResult(id=task_id, terminate=terminate, outcome=where, removed_from_queue=removed,
                        acknowledged_by=sorted(outcome.replies), workers_listening=outcome.listeners,
                        location=location, worker=before.worker if before else None)


def _remove_from_queues(app: Celery, task_id: str) -> str | None:
    from cars_bot.broker import remove_queued
    from carsctl.cluster.remote_control import connected

    with connected(app, write=True) as conn:
        return remove_queued(conn.default_channel, app.amqp.queues, task_id)
