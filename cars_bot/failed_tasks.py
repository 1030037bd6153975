"""The failed-task registry: every task that failed for good, with what it received.

Records go to the `failed_tasks` table. If the database itself is unreachable, the record is appended
to `LOG_DIR/failed_tasks.jsonl` instead, so nothing a task received is lost silently.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from cars_bot.config import get_settings, mask_secrets_in

logger = logging.getLogger("cars_bot.failed_tasks")


def record_failure(*, task_id: str, task_name: str, args: list[Any], kwargs: dict[str, Any],
                   queue: str | None, exc: BaseException, traceback: str | None) -> None:
    """Store one failure; never raises (a failure handler must not fail the worker)."""
    settings = get_settings()
    exception = mask_secrets_in(f"{type(exc).__name__}: {exc}", settings)
    tb = mask_secrets_in(traceback, settings) if traceback else None
    try:
        from cars_bot.db.models import FailedTask
        from cars_bot.db.session import session_scope

        with session_scope() as session:
            session.add(FailedTask(task_id=task_id, task_name=task_name, args=_jsonable(args),
                                   kwargs=_jsonable(kwargs), queue=queue, exception=exception,
                                   traceback=tb))
    except Exception as db_error:  # noqa: BLE001 - fall back to a file, whatever went wrong
        logger.error("failed-task registry unavailable (%s); writing to failed_tasks.jsonl", db_error)
        _append_fallback(settings.log_dir, {
            "task_id": task_id, "task_name": task_name, "args": args, "kwargs": kwargs,
            "queue": queue, "exception": exception, "traceback": tb,
            "failed_at": datetime.now().astimezone().isoformat(),
        })


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _append_fallback(log_dir: Any, record: dict[str, Any]) -> None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "failed_tasks.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    except OSError as error:
        logger.critical("could not record failed task %s anywhere: %s", record.get("task_id"), error)


def list_failed(session: Any, limit: int = 50, include_retried: bool = False) -> list[Any]:
    """The newest failed-task records."""
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    query = select(FailedTask).order_by(FailedTask.failed_at.desc(), FailedTask.id.desc()).limit(limit)
    if not include_retried:
        query = query.where(FailedTask.status == FailedTaskStatus.FAILED)
    return list(session.scalars(query))
