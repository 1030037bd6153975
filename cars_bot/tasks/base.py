"""The one base class of every task: retries for transient errors only, limits, logging, and the
failed-task registry.

- Transient errors (connection lost, timeouts, rate limits: :data:`TRANSIENT_ERRORS`) are retried with
  exponential backoff and full jitter, capped at 10 min, up to `max_retries` (5). When the remote
  side said how long to wait (`TransientError.retry_after`: Telegram FloodWait, HTTP Retry-After),
  that delay is used instead, capped at :data:`cars_bot.celery_app.MAX_COUNTDOWN`.
- A message with an expiry (every periodic task: beat gives each entry one no longer than its period)
  is not retried when the retry would come after it expires: the next periodic run does the same
  work, and a backlog of retries would only add to the burst (more Sheets 429s). It is logged and
  ignored instead.
- Anything else fails at once: retrying a bug or a bad input only repeats it.
- A task that fails for good (permanent error, or retries exhausted) is written to the failed-task
  registry with its arguments, so `carsctl task failed` / `carsctl task retry` can show and re-run it.
- Start, success, retry and failure are logged with the task id.

Task bodies return :func:`task_result` of the domain function's typed result: a plain dict of JSON
values, because that is what the result backend stores and what `carsctl task result` shows.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import socket
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from celery import Task

from cars_bot.errors import TransientError

logger = logging.getLogger("cars_bot.tasks")

BACKOFF_BASE = 2.0
BACKOFF_MAX = 600.0


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [TransientError, ConnectionError, TimeoutError, socket.timeout]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        import sqlalchemy.exc

        # "could not connect" / "server closed the connection" / "database is locked"
        errors.append(sqlalchemy.exc.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()


def retry_delay(retries: int, exc: BaseException) -> float:
    """Seconds before the next attempt: what the remote side asked for, else backoff with jitter."""
    from cars_bot.celery_app import MAX_COUNTDOWN

    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return float(min(max(retry_after, 0.0), MAX_COUNTDOWN))
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE ** (retries + 1))
    return random.uniform(ceiling / 2, ceiling)


def _expiry(value: Any) -> datetime | None:
    """A request's `expires` (ISO text or datetime) as an aware datetime; None without one."""
    if not value:
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class CarsTask(Task):
    """Base task: see the module docstring. Subclass options: `max_retries`, time limits."""

    abstract = True
    max_retries = 5
    transient_errors: tuple[type[BaseException], ...] = TRANSIENT_ERRORS

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._run_with_retries(*args, **kwargs)
        except Exception as exc:
            # The result backend stores the error and its traceback (every chained message): masked first.
            from cars_bot.config import get_settings
            from cars_bot.secret_masking import mask_exception

            mask_exception(exc, get_settings())
            raise

    def _run_with_retries(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except self.transient_errors as exc:
            if self.request.called_directly:
                raise
            delay = retry_delay(self.request.retries, exc)
            expires = _expiry(self.request.expires)
            if expires is not None and datetime.now(UTC) + timedelta(seconds=delay) >= expires:
                from celery.exceptions import Ignore

                logger.warning("task %s[%s] not retried: %s: %s; a retry in %.0fs would come after it expires at %s",
                               self.name, self.request.id, type(exc).__name__, exc, delay, expires.isoformat())
                raise Ignore() from exc
            # Task.retry raises Retry, or the original error once max_retries is reached.
            raise self.retry(exc=exc, countdown=delay) from exc

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        logger.info("task %s[%s] started args=%s kwargs=%s", self.name, task_id, args, kwargs)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        logger.info("task %s[%s] succeeded: %s", self.name, task_id, _short(retval))

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        logger.warning(
            "task %s[%s] retry %d/%s: %s: %s",
            self.name, task_id, self.request.retries + 1, self.max_retries, type(exc).__name__, exc,
        )

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        logger.error("task %s[%s] failed: %s: %s", self.name, task_id, type(exc).__name__, exc)
        from cars_bot.failed_tasks import record_failure

        queue = (self.request.delivery_info or {}).get("routing_key")
        record_failure(
            task_id=task_id, task_name=self.name, args=list(args or []), kwargs=dict(kwargs or {}),
            queue=queue, exc=exc, traceback=str(einfo) if einfo is not None else None,
        )


def task_result(result: Any) -> dict[str, Any]:
    """A domain function's dataclass result as a task's JSON result: ``dataclasses.asdict`` with enum
    members as their values and datetimes as ISO text (kombu's JSON would store a datetime as a tagged
    object, which only a Python client reads back)."""
    return dataclasses.asdict(result, dict_factory=_json_fields)


def _json_fields(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in fields}


def _json_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

