"""Tasks retry transient errors with backoff and land in the failed-task registry when they give up; the
registry is read, and its records are sent again, as typed records."""

import pytest
from sqlalchemy import select

from cars_bot.celery_app import app
from cars_bot.db.models import FailedTask
from cars_bot.errors import PermanentError, TransientError
from cars_bot.tasks.base import CarsTask, retry_delay

ATTEMPTS: dict[str, int] = {}


@app.task(bind=True, base=CarsTask, name="tests.flaky_task", max_retries=2)
def flaky_task(self, key: str, succeed_after: int) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= succeed_after:
        raise TransientError("rate limited", retry_after=0)
    return f"ok after {ATTEMPTS[key]}"


@app.task(bind=True, base=CarsTask, name="tests.broken_task")
def broken_task(self, post_id: int, *, reason: str = "bad input") -> None:
    ATTEMPTS["broken"] = ATTEMPTS.get("broken", 0) + 1
    raise PermanentError(f"{reason} for post {post_id} with key sk-secret-value-123456")


def _records_when_present(db, ids: set[str], timeout: float = 10.0) -> dict[str, FailedTask]:
    # Celery stores the result before it calls on_failure, so the record may land a moment later.
    import time

    deadline = time.monotonic() + timeout
    while True:
        with db() as session:
            rows = {row.task_id: row for row in session.scalars(select(FailedTask))}
        if ids <= set(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_retry_delay_honours_retry_after_and_caps_backoff() -> None:
    assert retry_delay(0, TransientError("x", retry_after=30)) == 30
    assert retry_delay(0, TransientError("x", retry_after=10**6)) == 3600
    for retries in range(12):
        delay = retry_delay(retries, ConnectionError())
        assert 0 < delay <= 600
    assert retry_delay(0, ConnectionError()) <= 2


@pytest.fixture
def worker(celery_app_real, db):
    from celery.contrib.testing.worker import start_worker

    ATTEMPTS.clear()
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["default"], shutdown_timeout=10):
        yield


def test_transient_errors_are_retried_until_success(worker) -> None:
    result = flaky_task.apply_async(args=["a", 2])
    assert result.get(timeout=30) == "ok after 3"


def test_exhausted_retries_and_permanent_errors_are_recorded(worker, db, monkeypatch) -> None:
    from cars_bot.config import reset_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123456")  # a configured secret is masked
    reset_settings()
    gave_up = flaky_task.apply_async(args=["b", 10])
    with pytest.raises(TransientError):
        gave_up.get(timeout=30)
    assert ATTEMPTS["b"] == 3  # first run + max_retries
    failed = broken_task.apply_async(args=[42], kwargs={"reason": "empty text"})
    with pytest.raises(PermanentError):
        failed.get(timeout=30)
    assert ATTEMPTS["broken"] == 1  # permanent: never retried
    rows = _records_when_present(db, {gave_up.id, failed.id})
    assert set(rows) == {gave_up.id, failed.id}
    record = rows[failed.id]
    assert record.task_name == "tests.broken_task"
    assert record.args == [42] and record.kwargs == {"reason": "empty text"}
    assert record.queue == "default"
    assert "PermanentError: empty text for post 42" in record.exception
    assert "sk-secret-value-123456" not in record.exception
    assert record.traceback and "Traceback" in record.traceback
    assert record.failed_at.tzinfo is not None
    reset_settings()


def test_registry_falls_back_to_a_file_when_the_database_is_down(tmp_path, monkeypatch) -> None:
    import json

    from cars_bot.config import reset_settings
    from cars_bot.failed_tasks import record_failure

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    reset_settings()
    try:
        record_failure(task_id="t-1", task_name="x.y_task", args=[1], kwargs={}, queue="default",
                       exc=ValueError("boom"), traceback=None)
    finally:
        reset_settings()
    line = json.loads((tmp_path / "failed_tasks.jsonl").read_text().splitlines()[0])
    assert line["task_id"] == "t-1" and line["args"] == [1] and "boom" in line["exception"]


def _add_failed(db, *task_ids: str) -> list[int]:
    with db() as session:
        rows = [FailedTask(task_id=task_id, task_name="cars_bot.tasks.ai_tasks.process_post_task", args=[n],
                           kwargs={}, queue="ai_processing", exception="E") for n, task_id in enumerate(task_ids)]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows]


def test_records_are_read_as_typed_values(db) -> None:
    from cars_bot.db.models import FailedTaskStatus
    from cars_bot.failed_tasks import failed_records, pending_count

    first, _second = _add_failed(db, "t-1", "t-2")
    records = failed_records()
    assert [r.task_id for r in records] == ["t-2", "t-1"]  # newest first
    record = records[1]
    assert (record.id, record.task, record.alias, record.args, record.queue) == \
        (first, "cars_bot.tasks.ai_tasks.process_post_task", "process-post", [0], "ai_processing")
    assert record.status == FailedTaskStatus.FAILED and record.failed_at.tzinfo is not None
    assert pending_count() == 2 and len(failed_records(limit=1)) == 1


def test_retry_marks_what_was_sent_and_keeps_the_marks_when_a_send_fails(db) -> None:
    from cars_bot.db.models import FailedTaskStatus
    from cars_bot.failed_tasks import AlreadyRetried, NoSuchFailedTask, failed_records, pending_count, retry_failed

    _add_failed(db, "t-1", "t-2", "t-3")
    [one] = retry_failed(lambda record: f"new-{record.task_id}", "t-2")
    assert (one.status, one.retry_task_id) == (FailedTaskStatus.RETRIED, "new-t-2") and one.retried_at
    with pytest.raises(AlreadyRetried, match="already retried as new-t-2"):
        retry_failed(lambda record: "never", "t-2")
    with pytest.raises(NoSuchFailedTask):
        retry_failed(lambda record: "never", "9999")

    sent: list[str] = []

    def send_one_then_fail(record) -> str:
        if sent:
            raise ConnectionError("broker went away")
        sent.append(record.task_id)
        return "new-" + record.task_id

    with pytest.raises(ConnectionError):
        retry_failed(send_one_then_fail, every=True)
    assert sent == ["t-1"]  # oldest first
    assert pending_count() == 1
    assert {r.task_id: r.retry_task_id for r in failed_records(include_retried=True)} == \
        {"t-1": "new-t-1", "t-2": "new-t-2", "t-3": None}


def test_an_unreachable_registry_is_one_error(monkeypatch) -> None:
    from cars_bot.config import reset_settings
    from cars_bot.failed_tasks import RegistryUnavailable, failed_records

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    reset_settings()
    try:
        with pytest.raises(RegistryUnavailable, match=r"127\.0\.0\.1"):
            failed_records()
    finally:
        reset_settings()


def test_one_jsonable_for_stored_arguments_and_shown_results() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from cars_bot.json_data import jsonable

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert jsonable({"at": moment, "price": Decimal("1.5"), "ids": (1, 2)}) == \
        {"at": str(moment), "price": "1.5", "ids": [1, 2]}
