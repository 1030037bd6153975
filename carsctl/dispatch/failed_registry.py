"""The failed-task registry from the operator's side: list the records, send them again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cars_bot.task_names import task_alias
from carsctl.errors import DependencyUnavailable, OperationFailed, UsageError

if TYPE_CHECKING:
    from celery import Celery


@contextmanager
def registry_session() -> Iterator[Any]:
    """A database session; an unreachable or unmigrated database becomes one line (exit 69)."""
    from sqlalchemy.exc import SQLAlchemyError

    from cars_bot.db.session import session_scope

    try:
        with session_scope() as session:
            yield session
    except SQLAlchemyError as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise DependencyUnavailable(f"database: {reason}",
                                    hint="check DATABASE_URL, and run `carsctl db upgrade`") from None


def failed_rows(limit: int, include_retried: bool = False) -> list[dict[str, Any]]:
    """The newest failed-task records as plain dicts."""
    from cars_bot.failed_tasks import list_failed

    with registry_session() as session:
        return [_failed_dict(record) for record in list_failed(session, limit, include_retried=include_retried)]


def _failed_dict(record: Any) -> dict[str, Any]:

    return {"id": record.id, "task_id": record.task_id, "task": record.task_name,
            "alias": task_alias(record.task_name), "args": record.args, "kwargs": record.kwargs,
            "queue": record.queue, "exception": record.exception, "failed_at": record.failed_at,
            "status": str(record.status), "retried_at": record.retried_at, "retry_task_id": record.retry_task_id,
            "traceback": record.traceback}


def retry_failed(app: Celery, ident: str | None, *, every: bool = False) -> list[dict[str, Any]]:
    """Re-send failed tasks with their original name, arguments and queue; mark each record RETRIED.

    `ident` is the registry id (`carsctl task failed` shows it) or the failed task's id.
    """
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus
    from carsctl.cluster.remote_control import broker_error

    with registry_session() as session:
        if every:
            query = select(FailedTask).where(FailedTask.status == FailedTaskStatus.FAILED)
            records = list(session.scalars(query.order_by(FailedTask.failed_at, FailedTask.id)))
        else:
            records = [_find_failed(session, ident)]
        done = []
        for record in records:
            try:
                result = app.send_task(record.task_name, args=list(record.args or []),
                                       kwargs=dict(record.kwargs or {}), queue=record.queue or None)
            except Exception as error:  # noqa: BLE001 - stop at the first broker error, keep what was sent
                session.commit()
                raise broker_error(app, error) from None
            record.status = FailedTaskStatus.RETRIED
            record.retried_at = datetime.now(UTC)
            record.retry_task_id = result.id
            done.append(_failed_dict(record))
        return done


def _find_failed(session: Any, ident: str | None) -> Any:
    from sqlalchemy import select

    from cars_bot.db.models import FailedTask, FailedTaskStatus

    if not ident:
        raise UsageError("give a failed task's id, or --all")
    column, value = (FailedTask.id, int(ident)) if ident.isdigit() else (FailedTask.task_id, ident)
    records = list(session.scalars(select(FailedTask).where(column == value).order_by(FailedTask.id.desc())))
    if not records:
        raise OperationFailed(f"no failed task {ident!r} in the registry", hint="list them with `carsctl task failed`")
    pending = [record for record in records if record.status == FailedTaskStatus.FAILED]
    if not pending:
        raise OperationFailed(f"failed task {ident!r} was already retried as {records[0].retry_task_id}")
    return pending[0]
