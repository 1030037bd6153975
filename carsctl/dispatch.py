"""Manual task dispatch: names, arguments, sending one or many, results, revoke, failed-task retry.

- A task is named by its alias (`process-post`), its function name or its full name; an unknown
  name is rejected with the closest matches.
- Command-line arguments are strings; they are converted to the task's parameter types read from its
  signature (`42` becomes an int for `post_id: int`), and a wrong count, an unknown keyword or a
  value of the wrong type is rejected before anything is sent.
- Bulk dispatch builds each message as `apply_async` would (routing, priority, task-sent event) and
  hands them to kombu's batch producer, which on Redis writes them with pipelined round trips instead
  of one per message. It does not subscribe to each task's result as `apply_async` does.
- A result lookup tells an unknown (or expired) id apart from a task that is still pending: with
  `result_extended` a task that ran has a meta key, and one that has not run yet sits in a queue, in
  the `unacked` hash or with a worker.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carsctl.errors import CarsctlError, DependencyUnavailable, OperationFailed, UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings

RETRY_POLICY_KEYS: dict[str, Callable[[str], Any]] = {
    "max_retries": int, "interval_start": float, "interval_step": float, "interval_max": float,
    "timeout": float,
}
BULK_BATCH_SIZE = 2000


# --- names ---------------------------------------------------------------------------------------

def load_tasks(app: Celery) -> dict[str, Any]:
    """The project's registered tasks by full name (imports the task modules)."""
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def resolve_task(app: Celery, name: str) -> Any:
    """The task named by alias, function name or full name; UsageError with the closest matches."""
    from difflib import get_close_matches

    from carsctl.completion_cache import task_alias

    tasks = load_tasks(app)
    if name in tasks:
        return tasks[name]
    by_alias = {task_alias(full): full for full in tasks}
    by_alias.update({full.rsplit(".", 1)[-1]: full for full in tasks})
    wanted = name.replace("_", "-") if name.replace("_", "-") in by_alias else name
    if wanted in by_alias:
        return tasks[by_alias[wanted]]
    close = get_close_matches(name, [task_alias(full) for full in tasks] + list(tasks), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "list them with `carsctl task list`"
    raise UsageError(f"unknown task {name!r}", hint=hint)


def task_catalog(app: Celery) -> list[dict[str, Any]]:
    """Every project task: alias, name, queue, default priority, limits, retries, periodic schedule."""
    from carsctl.completion_cache import task_alias

    periodic: dict[str, list[str]] = {}
    for spec in (app.conf.beat_schedule or {}).values():
        periodic.setdefault(spec["task"], []).append(describe_schedule(spec["schedule"]))
    rows = []
    for name, task in sorted(load_tasks(app).items()):
        route = effective_route(app, task, {})
        queue = route.get("queue")
        rows.append({
            "alias": task_alias(name), "name": name,
            "signature": f"({', '.join(_param_text(p) for p in _signature(task).parameters.values())})",
            "queue": getattr(queue, "name", queue), "priority": route.get("priority"),
            "soft_time_limit": task.soft_time_limit or app.conf.task_soft_time_limit,
            "time_limit": task.time_limit or app.conf.task_time_limit,
            "max_retries": task.max_retries, "acks_late": bool(task.acks_late),
            "periodic": periodic.get(name, []),
        })
    return rows


def describe_schedule(schedule: Any) -> str:
    """'every 60s' / 'cron 0 * * * *' for a beat schedule value."""
    if isinstance(schedule, (int, float)):
        return f"every {schedule:g}s"
    run_every = getattr(schedule, "run_every", None)
    if hasattr(schedule, "_orig_minute"):
        return "cron " + " ".join(str(getattr(schedule, f"_orig_{part}")) for part in
                                  ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
    if run_every is not None:
        return f"every {run_every.total_seconds():g}s"
    return str(schedule)


# --- arguments -----------------------------------------------------------------------------------

def _signature(task: Any) -> pyinspect.Signature:
    return pyinspect.signature(task.run)


def _param_text(param: pyinspect.Parameter) -> str:
    text = str(param)
    return text.replace("'", "")


def _hints(task: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(task.run)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to literal parsing
        return {}


def convert_arguments(task: Any, raw_args: list[str], raw_kwargs: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Command-line strings as the task's typed arguments; UsageError (exit 2) on any mismatch."""
    from carsctl.completion_cache import task_alias

    alias = task_alias(task.name)
    signature = _signature(task)
    hints = _hints(task)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p for p in params if p.kind == p.VAR_POSITIONAL), None)
    var_keyword = next((p for p in params if p.kind == p.VAR_KEYWORD), None)
    usage = f"usage: {alias} {' '.join(_param_text(p) for p in params)}".rstrip()
    args: list[Any] = []
    for index, raw in enumerate(raw_args):
        param = positional[index] if index < len(positional) else var_positional
        if param is None:
            raise UsageError(f"{alias} takes {len(positional)} argument(s), got {len(raw_args)}", hint=usage)
        args.append(convert_value(raw, hints.get(param.name, param.annotation), param.name))
    kwargs: dict[str, Any] = {}
    for item in raw_kwargs:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--kwarg expects KEY=VALUE, got {item!r}")
        param = signature.parameters.get(key)
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            if var_keyword is None:
                raise UsageError(f"{alias} has no parameter {key!r}", hint=usage)
            param = var_keyword
        kwargs[key] = convert_value(raw, hints.get(param.name, param.annotation), key)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise UsageError(f"{alias}: {error}", hint=usage) from None
    return args, kwargs


def convert_value(raw: str, annotation: Any, name: str) -> Any:
    """One string converted to `annotation` (a type, a union, a generic, or nothing: a JSON literal)."""
    if annotation in (pyinspect.Parameter.empty, Any, object) or isinstance(annotation, str):
        return _literal(raw)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if type(None) in members and raw.strip().lower() in ("none", "null"):
            return None
        for member in (m for m in members if m is not type(None)):
            try:
                return convert_value(raw, member, name)
            except UsageError:
                continue
        raise UsageError(f"{name}: expected {_type_name(annotation)}, got {raw!r}")
    if origin is typing.Literal:
        for choice in typing.get_args(annotation):
            if str(choice) == raw:
                return choice
        raise UsageError(f"{name}: {raw!r} is not one of {', '.join(map(str, typing.get_args(annotation)))}")
    target = origin or annotation
    converters: dict[Any, Callable[[str], Any]] = {
        str: str, int: _int, float: float, bool: _bool, datetime: datetime.fromisoformat,
    }
    try:
        if target in converters:
            return converters[target](raw)
        if target in (list, tuple, set, dict):
            value = json.loads(raw)
            if not isinstance(value, dict if target is dict else list):
                raise ValueError
            return value
    except (ValueError, TypeError):
        raise UsageError(f"{name}: expected {_type_name(annotation)}, got {raw!r}") from None
    return _literal(raw)


def _int(raw: str) -> int:
    return int(raw.strip().replace("_", ""))


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(raw)


def _literal(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _type_name(annotation: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a JSON list", tuple: "a JSON list", set: "a JSON list", dict: "a JSON object",
             datetime: "an ISO date-time"}
    if annotation in names:
        return names[annotation]
    origin = typing.get_origin(annotation)
    if origin in names:
        return names[origin]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(m) if m is not type(None) else "none" for m in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def parse_retry_policy(text: str | None) -> dict[str, Any] | None:
    """`max_retries=5,interval_start=1` -> a kombu publish retry policy; UsageError on unknown keys."""
    if not text:
        return None
    policy: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in RETRY_POLICY_KEYS:
            raise UsageError(f"bad --retry-policy item {item!r}", hint=f"keys: {', '.join(RETRY_POLICY_KEYS)}")
        try:
            policy[key] = RETRY_POLICY_KEYS[key](raw.strip())
        except ValueError:
            raise UsageError(f"--retry-policy {key} must be a number, got {raw!r}") from None
    return policy


def parse_eta(text: str | None) -> datetime | None:
    """An ISO date-time; without a zone it is local time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--eta expects an ISO date-time like 2026-05-01T12:00:00+03:00, got {text!r}") from None
    return moment if moment.tzinfo else moment.astimezone()


def send_options(app: Celery, *, queue: str | None, priority: int | None, countdown: float | None,
                 eta: str | None, retry_policy: str | None) -> dict[str, Any]:
    """`apply_async` options from the command line, validated."""
    options: dict[str, Any] = {}
    if queue:
        from carsctl.queues import check_queue_names

        options["queue"] = check_queue_names(app, [queue])[0]
    if priority is not None:
        options["priority"] = priority
    if countdown is not None and eta:
        raise UsageError("give --countdown or --eta, not both")
    if countdown is not None:
        options["countdown"] = countdown
    if eta:
        options["eta"] = parse_eta(eta)
    policy = parse_retry_policy(retry_policy)
    if policy is not None:
        options["retry"] = True
        options["retry_policy"] = policy
    return options


def read_argument_lines(lines: Iterable[str]) -> list[list[str]]:
    """One task's positional arguments per line (whitespace-separated); blank lines and # comments skipped."""
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --- sending -------------------------------------------------------------------------------------

def effective_route(app: Celery, task: Any, options: dict[str, Any], args: Any = None,
                    kwargs: Any = None) -> dict[str, Any]:
    """Queue, priority and the other publish options exactly as `apply_async` would resolve them.

    The task's own options (its `priority`, `queue`, limits; set ones only) come first, then the
    caller's, and the router fills in what neither set: so what carsctl reports is what is sent.
    """
    own = {key: value for key, value in task._get_exec_options().items() if value is not None}
    return app.amqp.router.route({**own, **options}, task.name, args, kwargs, task)


def send(app: Celery, task: Any, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Send one task; return its id and where it went."""
    from carsctl.remote import broker_error, connected

    route = effective_route(app, task, options, args, kwargs)
    with connected(app, write=True):
        pass  # a broker that is down: one clear line now, not after the publish and result-store retries
    try:
        result = task.apply_async(args=args, kwargs=kwargs, **options)
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        raise broker_error(app, error) from None
    queue = route.get("queue")
    return {"id": result.id, "task": task.name, "args": args, "kwargs": kwargs,
            "queue": getattr(queue, "name", queue), "priority": route.get("priority"),
            "eta": options.get("eta"), "countdown": options.get("countdown")}


def send_bulk(app: Celery, task: Any, arg_lists: list[list[Any]], options: dict[str, Any],
              batch_size: int = BULK_BATCH_SIZE) -> dict[str, Any]:
    """Send one task per argument list through kombu's batch producer; return ids, count, rate."""
    from kombu import Producer
    from kombu.utils.uuid import uuid

    from carsctl.remote import broker_error, connected

    options = dict(options)
    countdown, eta = options.pop("countdown", None), options.pop("eta", None)
    options.pop("retry", None)
    options.pop("retry_policy", None)  # a pipeline is not replayed: a failed batch is reported instead
    amqp = app.amqp
    route = effective_route(app, task, options)
    limits = {"time_limit": route.pop("time_limit", None), "soft_time_limit": route.pop("soft_time_limit", None)}
    sent_event = app.conf.task_send_sent_event
    ids: list[str] = []
    began = time.perf_counter()
    try:
        with connected(app, write=True) as conn:
            producer = Producer(conn.default_channel)
            with producer.batch(max_size=batch_size):
                for args in arg_lists:
                    task_id = uuid()
                    message = amqp.create_task_message(
                        task_id, task.name, args, {}, countdown=countdown, eta=eta,
                        reply_to=app.thread_oid, create_sent_event=sent_event, **limits)
                    amqp.send_task_message(producer, task.name, message, **route)
                    ids.append(task_id)
    except CarsctlError:
        raise
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        if ids and type(error).__name__ == "BatchPublishError":
            raise OperationFailed(f"bulk dispatch failed after {len(ids)} messages were prepared; delivery "
                                  "of the last batch is uncertain", hint=str(error.__cause__ or error)) from None
        raise broker_error(app, error) from None
    seconds = time.perf_counter() - began
    queue = route.get("queue")
    return {"task": task.name, "sent": len(ids), "queue": getattr(queue, "name", queue),
            "priority": route.get("priority"), "seconds": round(seconds, 3),
            "rate_per_s": round(len(ids) / seconds) if seconds else None, "ids": ids}


# --- results -------------------------------------------------------------------------------------

def result_info(app: Celery, task_id: str, *, settings: Settings | None = None,
                timeout: float = 1.0) -> dict[str, Any]:
    """What is known about a task id: its stored state and result, or where it waits, or 'unknown'."""
    from carsctl.remote import broker_error

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
    from carsctl.remote import broadcast, connected

    needle = task_id.encode()
    with connected(app) as conn:
        channel = conn.default_channel
        if hasattr(channel, "_q_for_pri"):
            client = channel.client
            for queue in app.amqp.queues:
                for level in channel.priority_steps:
                    key = channel._q_for_pri(queue, level)
                    if any(needle in raw for raw in client.lrange(key, 0, -1)):
                        return {"location": f"queued in {queue}", "queue": queue}
            if any(needle in raw for raw in client.hvals(channel.unacked_key)):
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
    from carsctl.remote import broadcast

    removed = _remove_from_queues(app, task_id)
    outcome = broadcast(app, "revoke", {"task_id": task_id, "terminate": terminate, "signal": "SIGTERM"},
                        timeout=timeout, settings=settings)
    return {"id": task_id, "terminate": terminate, "removed_from_queue": removed,
            "acknowledged_by": sorted(outcome.replies), "workers_listening": outcome.listeners}


def _remove_from_queues(app: Celery, task_id: str) -> str | None:
    from carsctl.remote import connected

    needle = task_id.encode()
    with connected(app, write=True) as conn:
        channel = conn.default_channel
        if not hasattr(channel, "_q_for_pri"):
            return None
        client = channel.client
        for queue in app.amqp.queues:
            for level in channel.priority_steps:
                key = channel._q_for_pri(queue, level)
                for raw in client.lrange(key, 0, -1):
                    if needle in raw and client.lrem(key, 1, raw):
                        return queue
    return None


# --- the failed-task registry ----------------------------------------------------------------------

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
    from carsctl.completion_cache import task_alias

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
    from carsctl.remote import broker_error

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
