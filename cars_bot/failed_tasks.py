"""The failed-task registry: every task that failed for good, with what it received.

Records go to the `failed_tasks` table. If the database itself is unreachable, the record is appended
to `LOG_DIR/failed_tasks.jsonl` instead, so nothing a task received is lost silently.

Reading and retrying records (`failed_records`, `retry_failed`) own their session, so a caller (the
CLI) never touches the table: it gets typed records, and sends the tasks itself through a callback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cars_bot.config import get_settings
from cars_bot.errors import CarsBotError
from cars_bot.json_data import jsonable
from cars_bot.private_files import open_private, private_dir
from cars_bot.secret_masking import mask_secrets_in
from cars_bot.task_names import task_alias

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cars_bot.db.models import FailedTask, FailedTaskStatus

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
            session.add(FailedTask(task_id=task_id, task_name=task_name, args=jsonable(args),
                                   kwargs=jsonable(kwargs), queue=queue, exception=exception,
                                   traceback=tb))
    except Exception as db_error:  # noqa: BLE001 - fall back to a file, whatever went wrong
        logger.error("failed-task registry unavailable (%s); writing to failed_tasks.jsonl", db_error)
        _append_fallback(settings.log_dir, {
            "task_id": task_id, "task_name": task_name, "args": args, "kwargs": kwargs,
            "queue": queue, "exception": exception, "traceback": tb,
            "failed_at": datetime.now().astimezone().isoformat(),
        })


def _append_fallback(log_dir: Any, record: dict[str, Any]) -> None:
    try:
        private_dir(log_dir, tighten_existing=False)
        with open_private(log_dir / "failed_tasks.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    except OSError as error:
        logger.critical("could not record failed task %s anywhere: %s", record.get("task_id"), error)


class RegistryUnavailable(CarsBotError):
    """The database holding the registry cannot be reached or is not migrated."""


class NoSuchFailedTask(CarsBotError):
    """No record has this registry id or task id."""


class AlreadyRetried(CarsBotError):
    """Every record of this id was sent again already (as `retry_task_id`)."""

    def __init__(self, message: str, retry_task_id: str | None) -> None:
        super().__init__(message)
        self.retry_task_id = retry_task_id


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """One failed task as the registry holds it (`task` is the full task name, `alias` its short one)."""

    id: int
    task_id: str
    task: str
    alias: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    exception: str
    failed_at: datetime
    status: FailedTaskStatus
    retried_at: datetime | None
    retry_task_id: str | None
    traceback: str | None


def _record(row: FailedTask) -> FailedRecord:
    return FailedRecord(id=row.id, task_id=row.task_id, task=row.task_name, alias=task_alias(row.task_name),
                        args=list(row.args or []), kwargs=dict(row.kwargs or {}), queue=row.queue,
                        exception=row.exception, failed_at=row.failed_at, status=row.status,
                        retried_at=row.retried_at, retry_task_id=row.retry_task_id, traceback=row.traceback)


@contextmanager
def _registry_session() -> Iterator[Session]:
    from sqlalchemy.exc import SQLAlchemyError

    from cars_bot.db.session import session_scope

    try:
        with session_scope() as session:
            yield session
    except SQLAlchemyError as error:
        raise RegistryUnavailable(str(error).strip().splitlines()[0][:200]) from None


def failed_records(limit: int = 50, include_retried: bool = False) -> list[FailedRecord]:
    """The newest records, newest first; without `include_retried` only those not sent again yet."""
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    query = select(FailedTask).order_by(FailedTask.failed_at.desc(), FailedTask.id.desc()).limit(limit)
    if not include_retried:
        query = query.where(FailedTask.status == FailedTaskStatus.FAILED)
    with _registry_session() as session:
        return [_record(row) for row in session.scalars(query)]


def pending_count() -> int:
    """How many records were not sent again yet (what `retry_failed(every=True)` would send)."""
    from sqlalchemy import func, select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    with _registry_session() as session:
        query = select(func.count()).select_from(FailedTask).where(FailedTask.status == FailedTaskStatus.FAILED)
        return int(session.scalar(query) or 0)


def retry_failed(send: Callable[[FailedRecord], str], ident: str | None = None, *,
                 every: bool = False) -> list[FailedRecord]:
    """Send failed tasks again through `send` (which returns the new task id) and mark each RETRIED.

    `ident` is a registry id (digits) or the failed task's id; `every` takes every record not retried
    yet, oldest first. If `send` raises, the records sent before it stay marked and the error propagates.
    Raises NoSuchFailedTask, AlreadyRetried, RegistryUnavailable.
    """
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    with _registry_session() as session:
        if every:
            query = select(FailedTask).where(FailedTask.status == FailedTaskStatus.FAILED)
            rows = list(session.scalars(query.order_by(FailedTask.failed_at, FailedTask.id)))
        else:
            rows = [_pending_row(session, ident or "")]
        done = []
        for row in rows:
            try:
                new_id = send(_record(row))
            except BaseException:
                session.commit()  # keep the marks of the tasks already sent
                raise
            row.status = FailedTaskStatus.RETRIED
            row.retried_at = datetime.now(UTC)
            row.retry_task_id = new_id
            done.append(_record(row))
        return done


def _pending_row(session: Session, ident: str) -> FailedTask:
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    column, value = (FailedTask.id, int(ident)) if ident.isdigit() else (FailedTask.task_id, ident)
    rows = list(session.scalars(select(FailedTask).where(column == value).order_by(FailedTask.id.desc())))
    if not rows:
        raise NoSuchFailedTask(f"no failed task {ident!r} in the registry")
    pending = [row for row in rows if row.status == FailedTaskStatus.FAILED]
    if not pending:
        raise AlreadyRetried(f"failed task {ident!r} was already retried as {rows[0].retry_task_id}",
                             rows[0].retry_task_id)
    return pending[0]
