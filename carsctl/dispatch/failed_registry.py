"""The failed-task registry from the operator's side: list the records, send them again.

The records, their lookup and the "retried" marks belong to `cars_bot.failed_tasks`; this module
sends the tasks through Celery and turns the registry's errors into the CLI's (an unreachable
database is exit 69, an unknown or already retried id exit 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from carsctl.errors import DependencyUnavailable, OperationFailed, UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.failed_tasks import FailedRecord


@contextmanager
def _registry_errors() -> Iterator[None]:
    from cars_bot.failed_tasks import AlreadyRetried, NoSuchFailedTask, RegistryUnavailable

    try:
        yield
    except RegistryUnavailable as error:
        raise DependencyUnavailable(f"database: {error}",
                                    hint="check DATABASE_URL, and run `carsctl db upgrade`") from None
    except NoSuchFailedTask as error:
        raise OperationFailed(str(error), hint="list them with `carsctl task failed`") from None
    except AlreadyRetried as error:
        raise OperationFailed(str(error)) from None


def failed_rows(limit: int, include_retried: bool = False) -> list[FailedRecord]:
    """The newest failed-task records, newest first."""
    from cars_bot.failed_tasks import failed_records

    with _registry_errors():
        return failed_records(limit, include_retried=include_retried)


def pending_count() -> int:
    """How many failed tasks `retry --all` would send."""
    from cars_bot.failed_tasks import pending_count as count

    with _registry_errors():
        return count()


def retry_failed(app: Celery, ident: str | None, *, every: bool = False) -> list[FailedRecord]:
    """Re-send failed tasks with their original name, arguments and queue; each record is marked RETRIED.

    `ident` is the registry id (`carsctl task failed` shows it) or the failed task's id. A broker error
    stops at that task; the ones sent before it stay marked.
    """
    from cars_bot.failed_tasks import retry_failed as retry
    from carsctl.cluster.remote_control import broker_error

    if not every and not ident:
        raise UsageError("give a failed task's id, or --all")

    def send(record: FailedRecord) -> str:
        try:
            return app.send_task(record.task, args=record.args, kwargs=record.kwargs, queue=record.queue or None).id
        except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
            raise broker_error(app, error) from None

    with _registry_errors():
        return retry(send, ident, every=every)
