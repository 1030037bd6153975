"""What became of a task id: its stored result, where it waits, waiting for it, revoking it.

A result lookup tells an unknown (or expired) id apart from a task that is still pending: with
`result_extended` a task that ran has a meta key, and one that has not run yet sits in a queue, in
the `unacked` hash or with a worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings


def result_info(app: Celery, task_id: str, *, settings: Settings | None = None,
                timeout: float = 1.0) -> dict[str, Any]:
    """What is known about a task id: its stored state and result, or where it waits, or 'unknown'."""
    from carsctl.cluster.remote_control import broker_error

    backend = app.backend
    try:
        meta = backend.get_task_meta(task_id)
        stored = meta.get("status") != "PENDING" or _has_meta_key(backend, task_id)
    except Exception as error:  # noqa: BLE001 - backend errors are transport-specific
        raise broker_error(app, error) from None
    info: dict[str, Any] = {"id": task_id, "state": meta.get("status"), "known": stored}
    if stored:
        info.update({
            "task": meta.get("name"), "args": meta.get("args"), "kwargs": meta.get("kwargs"),
            "worker": meta.get("worker"), "queue": meta.get("queue"), "retries": meta.get("retries"),
            "date_done": meta.get("date_done"),
            "result": _jsonable(meta.get("result")) if meta.get("status") == "SUCCESS" else None,
            "error": _error_text(meta.get("result")) if meta.get("status") in ("FAILURE", "RETRY") else None,
            "traceback": meta.get("traceback"),
        })
        return info
    info.update(locate(app, task_id, settings=settings, timeout=timeout))
    info["known"] = info["location"] is not None
    if info["location"] is None:
        info["state"] = "UNKNOWN"
    return info


def _has_meta_key(backend: Any, task_id: str) -> bool:
    client = getattr(backend, "client", None)
    if client is None or not hasattr(backend, "get_key_for_task"):
        return True  # cannot tell: treat as known rather than call a real task unknown
    return bool(client.exists(backend.get_key_for_task(task_id)))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _error_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, dict) and "exc_type" in value:
        return f"{value.get('exc_type')}: {' '.join(map(str, value.get('exc_message') or ()))}"
    return str(value)


def locate(app: Celery, task_id: str, *, settings: Settings | None = None, timeout: float = 1.0) -> dict[str, Any]:
    """Where a task without a stored state waits: a queue (ready), the unacked hash, or a worker."""
    from cars_bot.broker import find_queued, is_unacked
    from carsctl.cluster.remote_control import broadcast, connected

    with connected(app) as conn:
        queue = find_queued(conn.default_channel, app.amqp.queues, task_id)
        if queue is not None:
            return {"location": f"queued in {queue}", "queue": queue}
        if is_unacked(conn.default_channel, task_id):
            return {"location": "delivered to a worker, not yet acknowledged"}

    outcome = broadcast(app, "query_task", {"ids": [task_id]}, timeout=timeout, settings=settings)
    for node, found in outcome.replies.items():
        if task_id in (found or {}):
            state, _request = found[task_id]
            return {"location": f"{state} on {node}", "worker": node}
    return {"location": None}


def wait_for_result(app: Celery, task_id: str, timeout: float,
                    on_state: Callable[[str], None] | None = None) -> dict[str, Any]:
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
        if state in ("SUCCESS", "FAILURE", "REVOKED"):
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            result.get(timeout=min(remaining, 0.5), propagate=False, disable_sync_subtasks=False)
        except CeleryTimeout:
            pass
    info = result_info(app, task_id)
    info["timed_out"] = info["state"] not in ("SUCCESS", "FAILURE", "REVOKED")
    return info


def revoke(app: Celery, task_id: str, *, terminate: bool = False, settings: Settings | None = None,
           timeout: float = 1.0) -> dict[str, Any]:
    """Revoke a task: tell the running workers, and take it out of its queue if it is still there."""
    from carsctl.cluster.remote_control import broadcast

    removed = _remove_from_queues(app, task_id)
    outcome = broadcast(app, "revoke", {"task_id": task_id, "terminate": terminate, "signal": "SIGTERM"},
                        timeout=timeout, settings=settings)
    return {"id": task_id, "terminate": terminate, "removed_from_queue": removed,
            "acknowledged_by": sorted(outcome.replies), "workers_listening": outcome.listeners}


def _remove_from_queues(app: Celery, task_id: str) -> str | None:
    from cars_bot.broker import remove_queued
    from carsctl.cluster.remote_control import connected

    with connected(app, write=True) as conn:
        return remove_queued(conn.default_channel, app.amqp.queues, task_id)
