"""Command-line arguments of a task, converted and checked before anything is sent.

Command-line arguments are strings; they are converted to the task's parameter types read from its
signature (`42` becomes an int for `post_id: int`), and a wrong count, an unknown keyword or a value
of the wrong type is rejected (exit 2). The send options (`--queue`, `--eta`, `--retry-policy` ...)
are validated here too.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import types
import typing
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cars_bot.task_names import task_alias
from carsctl.errors import UsageError

if TYPE_CHECKING:
    from celery import Celery

RETRY_POLICY_KEYS: dict[str, Callable[[str], Any]] = {
    "max_retries": int, "interval_start": float, "interval_step": float, "interval_max": float,
    "timeout": float,
}


def task_signature(task: Any) -> pyinspect.Signature:
    return pyinspect.signature(task.run)


def param_text(param: pyinspect.Parameter) -> str:
    text = str(param)
    return text.replace("'", "")


def _hints(task: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(task.run)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to literal parsing
        return {}


def convert_arguments(task: Any, raw_args: list[str], raw_kwargs: list[str]) -> tuple[list[Any], dict[str, Any]]:
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
        from carsctl.cluster.queue_ops import check_queue_names

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
