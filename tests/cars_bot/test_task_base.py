"""The base task's retry rule, run through Celery's own eager retry path (no broker, no worker): transient
errors (a locked or unreachable database among them) are retried, anything else fails at once and lands in
the failed-task registry."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.exceptions
from celery import Celery
from sqlalchemy.exc import OperationalError

from cars_bot.errors import PermanentError, TransientError
from cars_bot.tasks.base import CarsTask, task_result

MAX_RETRIES = 3


@pytest.fixture
def eager_app() -> Iterator[Celery]:
    """A throwaway app: the test task must not join the project's registry."""
    app = Celery("test_task_base", set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What on_failure hands to the failed-task registry (instead of writing to a database)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("cars_bot.failed_tasks.record_failure", lambda **kw: calls.append(kw))
    return calls


_serial = itertools.count()  # a name per task: one name, one callable (Celery warns otherwise)


def failing_task(app: Celery, error: Callable[[], BaseException], failures: int) -> tuple[Any, list[int]]:
    """A CarsTask that raises `error()` on its first `failures` runs, then succeeds; and the retry
    counts it ran with."""
    attempts: list[int] = []

    @app.task(bind=True, base=CarsTask, name=f"tests.task_base.failing.{next(_serial)}", max_retries=MAX_RETRIES)
    def failing(self: CarsTask) -> str:
        attempts.append(self.request.retries)
        if len(attempts) <= failures:
            raise error()
        return "done"

    return failing, attempts


def _database_locked() -> OperationalError:
    return OperationalError("UPDATE posts SET status=?", {}, Exception("database is locked"))


@pytest.mark.parametrize("error", [
    _database_locked,
    lambda: TransientError("rate limited", retry_after=0),
    lambda: ConnectionError("reset"),
    lambda: TimeoutError(),
    lambda: redis.exceptions.ConnectionError("broker gone"),
], ids=["sqlalchemy-OperationalError", "TransientError", "ConnectionError", "TimeoutError", "redis-ConnectionError"])
def test_transient_errors_are_retried(eager_app: Celery, recorded: list[dict[str, Any]],
                                      error: Callable[[], BaseException]) -> None:
    task, attempts = failing_task(eager_app, error, failures=2)
    result = task.apply()
    assert result.successful() and result.get() == "done"
    assert attempts == [0, 1, 2]  # two retries, then success
    assert recorded == []


def test_a_database_operational_error_gives_up_after_max_retries(eager_app: Celery,
                                                                 recorded: list[dict[str, Any]]) -> None:
    task, attempts = failing_task(eager_app, _database_locked, failures=100)
    result = task.apply()
    assert result.failed() and isinstance(result.result, OperationalError)
    assert attempts == list(range(MAX_RETRIES + 1))
    (failure,) = recorded
    assert failure["task_name"].startswith("tests.task_base.failing.") and isinstance(failure["exc"], OperationalError)


@pytest.mark.parametrize("error", [lambda: ValueError("a bug"), lambda: PermanentError("bad input")],
                         ids=["bug", "PermanentError"])
def test_other_errors_fail_at_once_and_are_recorded(eager_app: Celery, recorded: list[dict[str, Any]],
                                                    error: Callable[[], BaseException]) -> None:
    task, attempts = failing_task(eager_app, error, failures=1)
    result = task.apply()
    assert result.failed() and attempts == [0]
    (failure,) = recorded
    assert type(failure["exc"]) is type(error())


def test_a_direct_call_raises_instead_of_retrying(eager_app: Celery) -> None:
    task, attempts = failing_task(eager_app, _database_locked, failures=1)
    with pytest.raises(OperationalError):
        task()
    assert attempts == [0]


def test_task_result_is_plain_json() -> None:
    from cars_bot.maintenance import SubscriptionExpiry
    from cars_bot.publishing.publication import PublishOutcome, PublishResult

    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert task_result(SubscriptionExpiry(expired=1, still_active=2, checked_at=moment)) == {
        "expired": 1, "still_active": 2, "checked_at": "2025-01-02T03:04:05+00:00"}
    published = task_result(PublishResult(PublishOutcome.ALREADY_PUBLISHED, 7, message_ids=[1, 2]))
    assert published["status"] == "already_published" and type(published["status"]) is str
    assert published["message_ids"] == [1, 2] and published["reason"] is None



class _WithExpiry(CarsTask):
    """Eager apply() leaves a message's `expires` in the headers; a worker's request carries it."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.request.expires = (self.request.headers or {}).get("expires")
        return super().__call__(*args, **kwargs)


def expiring_task(app: Celery, retry_after: float, failures: int) -> tuple[Any, list[int]]:
    attempts: list[int] = []

    @app.task(bind=True, base=_WithExpiry, name=f"tests.task_base.expiring.{next(_serial)}", max_retries=MAX_RETRIES)
    def expiring(self: CarsTask) -> str:
        attempts.append(self.request.retries)
        if len(attempts) <= failures:
            raise TransientError("429", retry_after=retry_after)
        return "done"

    return expiring, attempts


def test_a_retry_past_the_messages_expiry_is_not_scheduled(eager_app: Celery, recorded: list[dict[str, Any]]) -> None:
    # A periodic task expires after its period: a Sheets 429 asking for 120 s would retry after the
    # next run is already there. It is dropped (logged), not retried and not recorded as failed.
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    task, attempts = expiring_task(eager_app, retry_after=120, failures=5)
    result = task.apply(headers={"expires": soon})
    assert attempts == [0] and result.state == "IGNORED" and recorded == []
    later = (datetime.now(UTC) + timedelta(seconds=600)).isoformat()
    task, attempts = expiring_task(eager_app, retry_after=0, failures=2)
    result = task.apply(headers={"expires": later})
    assert result.get() == "done" and attempts == [0, 1, 2]  # within the expiry: retried
