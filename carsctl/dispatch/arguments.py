"""Command-line arguments of a task, converted and checked before anything is sent.

Command-line arguments are strings; pydantic converts them to the task's parameter types read from its
signature (`42` becomes an int for `post_id: int`), and a wrong count, an unknown keyword or a value
of the wrong type is rejected (exit 2). The send options (`--queue`, `--eta`, `--retry-policy` ...)
are validated here too.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import json
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cars_bot.task_names import task_alias
from carsctl.errors import UsageError

if TYPE_CHECKING:
    from celery import Celery

RETRY_POLICY_KEYS: dict[str, Callable[[str], float]] = {
    "max_retries": int, "interval_start": float, "interval_step": float, "interval_max": float,
    "timeout": float,
}


def task_signature(task: Any) -> pyinspect.Signature:
    """The parameters a caller passes (those of `run`: a bound task's `self` is not one of them)."""
    return pyinspect.signature(task.run)


def param_text(param: pyinspect.Parameter) -> str:
    """`post_id: int` as the catalog and usage lines show it (string annotations without their quotes)."""
    return str(param).replace("'", "")


def _hints(task: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(task.run)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to literal parsing
        return {}


@dataclass(frozen=True, slots=True)
class TaskCall:
    """A task's arguments, converted to its parameter types and checked against its signature."""

    args: list[Any]
    kwargs: dict[str, Any]


def convert_arguments(task: Any, raw_args: list[str], raw_kwargs: list[str]) -> TaskCall:
    """Command-line strings as the task's typed arguments; UsageError (exit 2) on any mismatch."""
    alias = task_alias(task.name)
    signature = task_signature(task)
    hints = _hints(task)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p for p in params if p.kind == p.VAR_POSITIONAL), None)
    var_keyword = next((p for p in params if p.kind == p.VAR_KEYWORD), None)
    usage = f"usage: {alias} {' '.join(param_text(p) for p in params)}".rstrip()
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
    return TaskCall(args, kwargs)


def convert_value(raw: str, annotation: Any, name: str) -> Any:
    """One string converted to `annotation` by pydantic (`42` -> int, `yes` -> True, `[1, 2]` -> list);
    without an annotation, a JSON literal or else the string. UsageError naming the parameter on a mismatch."""
    adapter = None if annotation in (pyinspect.Parameter.empty, Any, object) else _adapter(annotation)
    if adapter is None:
        return _in_range(name, _literal(raw), raw)
    from pydantic import ValidationError

    attempts = [adapter.validate_strings, adapter.validate_json]  # scalars as text, containers as JSON
    if raw.strip().lower() in ("none", "null"):
        attempts.insert(0, lambda _raw: adapter.validate_python(None))  # an Optional's None, before "none" text
    errors = []
    for attempt in attempts:
        try:
            return _in_range(name, attempt(raw), raw)
        except ValidationError as error:
            errors.append(error.errors()[0])
    error = next((e for e in reversed(errors) if e["type"] != "json_invalid"), errors[-1])
    expected = _EXPECTED.get(error["type"].split("_", 1)[0]) or error["msg"].replace("Input should be ", "", 1)
    raise UsageError(f"{name}: expected {expected}, got {raw!r}")


#: The ranges the database and the tasks hold, by parameter name: post ids are INTEGER keys, Telegram
#: user ids BIGINT, and `days_old` becomes a timedelta. Checked before sending, so that a worker never
#: meets a value it cannot store (`process-post 9223372036854775808` failed there with OverflowError).
PARAMETER_RANGES: dict[str, tuple[int, int]] = {
    "post_id": (1, 2**31 - 1), "user_id": (1, 2**63 - 1), "days_old": (1, 36_500),
}
#: Any other integer must fit a signed 64-bit column (and JSON readers in other languages).
INT64 = (-(2**63), 2**63 - 1)


def _in_range(name: str, value: Any, raw: str) -> Any:
    """`value` if every integer in it is within its parameter's range; UsageError naming it otherwise."""
    low, high = PARAMETER_RANGES.get(name, INT64)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not low <= item <= high:
            raise UsageError(f"{name}: expected an integer from {low} to {high}, got {raw[:60]!r}")
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"{name}: expected a finite number, got {raw[:60]!r}")
        if isinstance(item, (list, tuple, set)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return value


@functools.lru_cache(maxsize=64)
def _adapter(annotation: Any) -> Any:
    """pydantic's validator of a type, built once (building one costs ~100 µs, using it ~1 µs: bulk
    dispatch converts thousands of lines); None for a string annotation or a type pydantic cannot check."""
    from pydantic import PydanticSchemaGenerationError, TypeAdapter

    if isinstance(annotation, str):
        return None
    try:
        return TypeAdapter(annotation)
    except PydanticSchemaGenerationError:
        return None


#: How a pydantic error type (by its first word) reads in "post_id: expected an integer, got 'abc'".
_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a JSON list",
             "tuple": "a JSON list", "set": "a JSON list", "dict": "a JSON object", "datetime": "an ISO date-time"}


def _literal(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_retry_policy(text: str | None) -> dict[str, float] | None:
    """`max_retries=5,interval_start=1` -> a kombu publish retry policy; UsageError on unknown keys."""
    if not text:
        return None
    policy: dict[str, float] = {}
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


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How a task is sent, checked: queue and priority, when it runs, and the publish retry policy."""

    queue: str | None = None
    priority: int | None = None
    countdown: float | None = None
    eta: datetime | None = None
    retry_policy: dict[str, float] | None = None

    def routing(self) -> dict[str, Any]:
        """The options that choose where the message goes (the set ones), for `cars_bot.broker.task_route`."""
        return {key: value for key, value in (("queue", self.queue), ("priority", self.priority)) if value is not None}

    def apply_async_options(self) -> dict[str, Any]:
        """`apply_async` keyword arguments (the set ones)."""
        options = self.routing()
        if self.countdown is not None:
            options["countdown"] = self.countdown
        if self.eta is not None:
            options["eta"] = self.eta
        if self.retry_policy is not None:
            options.update(retry=True, retry_policy=self.retry_policy)
        return options


def send_options(app: Celery, *, queue: str | None, priority: int | None, countdown: float | None,
                 eta: str | None, retry_policy: str | None) -> SendOptions:
    """The send options from the command line, validated; UsageError (exit 2) on a bad one."""
    if queue:
        from carsctl.cluster.queue_ops import check_queue_names

        queue = check_queue_names(app, [queue])[0]
    if countdown is not None and eta:
        raise UsageError("give --countdown or --eta, not both")
    return SendOptions(queue=queue or None, priority=priority, countdown=countdown, eta=parse_eta(eta),
                       retry_policy=parse_retry_policy(retry_policy))


def read_argument_lines(lines: Iterable[str]) -> list[list[str]]:
    """One task's positional arguments per line (whitespace-separated); blank lines and # comments skipped."""
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


#: The largest row id of the database's integer keys (PostgreSQL INTEGER; SQLite's is larger).
MAX_ROW_ID = 2**31 - 1


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def task_id_argument(text: str) -> str:
    """A task id from the command line, checked, in Celery's form (a lowercase UUID).

    Celery gives every task a UUID and this project never chooses its own (`task_id=`), so any other
    string cannot name a task: UsageError (exit 2) instead of a PENDING that never existed.
    """
    import uuid

    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise UsageError(f"{_shown(text)} is not a task id",
                         hint="task ids are UUIDs like 1f0c6a2e-3b4d-4c5e-8f90-a1b2c3d4e5f6") from None


def failed_task_argument(text: str) -> str:
    """A failed-task registry id (digits, as `carsctl task failed` shows) or a task id; UsageError otherwise."""
    if text.isascii() and text.isdigit():
        if len(text) > 10 or not 1 <= int(text) <= MAX_ROW_ID:
            raise UsageError(f"no failed task {_shown(text)}: registry ids go from 1 to {MAX_ROW_ID}")
        return str(int(text))
    return task_id_argument(text)
