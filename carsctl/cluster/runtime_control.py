"""Runtime control of the running workers (`carsctl control`): task rate and time limits, pool size,
autoscale range, consumed queues, shutdown.

Each change is one early-returning broadcast (`remote_control.broadcast`). Its effect is then read back
from the nodes that accepted it (their task info, pool stats or consumed queues), so what carsctl shows
is what the workers now run with, not an echo of the request. Changes a worker applies later (new pool
processes, a queue consumed on the next loop turn) are polled for until they show or the timeout passes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from carsctl.errors import UsageError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings

RATE = re.compile(r"^(\d+(\.\d+)?)(/[smh])?$")
POLL_S = 0.1
POOL_CHANGE_S = 10.0  # how long a pool change may take to show (a process started or reaped)
TASK_INFO = ("rate_limit", "soft_time_limit", "time_limit")


class NodeOutcome(StrEnum):
    """What one addressed node did with the request."""

    CHANGED = "changed"      # accepted; the effect column shows what it now runs with
    REFUSED = "refused"      # answered with an error (unknown task, pool cannot grow, autoscale off)
    SILENT = "silent"        # addressed, did not answer within the timeout


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """A task's limits as the worker now holds them (None: not set, the worker-wide default applies)."""

    task: str
    rate_limit: str | None
    soft_time_limit_s: float | None
    time_limit_s: float | None


@dataclass(frozen=True, slots=True)
class PoolSize:
    """The pool's processes before the change and once the worker applied it."""

    before: int | None
    now: int | None


@dataclass(frozen=True, slots=True)
class AutoscaleRange:
    """The autoscaler's range as the worker reports it, and its processes now."""

    max: int | None
    min: int | None
    processes: int | None


@dataclass(frozen=True, slots=True)
class ConsumedQueues:
    """The queues the worker consumes from now."""

    queues: list[str]


Effect = TaskLimits | PoolSize | AutoscaleRange | ConsumedQueues


@dataclass(frozen=True, slots=True)
class NodeChange:
    """One node's answer: its outcome, its reply text, and the effect read back from it."""

    worker: str
    outcome: NodeOutcome
    reply: str
    effect: Effect | None


@dataclass(frozen=True, slots=True)
class ControlReport:
    """`carsctl control ACTION`: one row per addressed node, and who was not reached."""

    action: str
    request: str                 # what was asked, e.g. "process-post 10/m"
    nodes: list[NodeChange]
    changed: int
    refused: int
    silent_unnamed: int
    not_running: list[str]
    elapsed_ms: float


class ShutdownOutcome(StrEnum):
    STOPPED = "stopped"              # no longer answers remote control (and its process exited, if local)
    STILL_RUNNING = "still running"  # warm shutdown: running tasks finish first


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    node: str
    outcome: ShutdownOutcome
    waited_s: float


# --- validation -----------------------------------------------------------------------------------

def check_rate(rate: str) -> str:
    """A Celery rate ('10/m', '2/s', '100/h', '5' per second; '0' removes the limit) or UsageError."""
    if not RATE.match(rate.strip()):
        raise UsageError(f"invalid rate {rate!r}", hint="a number per s/m/h, e.g. 10/m, 2/s, 100/h; 0 removes it")
    return rate.strip()


def check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be positive, not {value:g}")


def _task_name(app: Celery, task: str) -> tuple[str, str]:
    """(full name, alias) of a task named by alias, function name or full name."""
    from cars_bot.task_names import task_alias
    from carsctl.dispatch.task_catalog import resolve_task

    name = resolve_task(app, task).name
    return name, task_alias(name)


# --- the changes ----------------------------------------------------------------------------------

def set_rate_limit(app: Celery, task: str, rate: str, *, destination: list[str] | None = None,
                   timeout: float = 1.0, settings: Settings | None = None) -> ControlReport:
    """Set a task's rate limit on the workers; the effect is the rate each worker now reports."""
    rate = check_rate(rate)
    name, alias = _task_name(app, task)
    return _apply(app, "rate-limit", f"{alias} {rate}", "rate_limit", {"task_name": name, "rate_limit": rate},
                  destination, timeout, settings, _task_limits_reader(app, name, timeout, settings))


def set_time_limit(app: Celery, task: str, soft: float, hard: float | None = None, *,
                   destination: list[str] | None = None, timeout: float = 1.0,
                   settings: Settings | None = None) -> ControlReport:
    """Set a task's soft and hard time limits (hard omitted: the task's configured hard limit)."""
    check_positive("the soft limit", soft)
    check_positive("the hard limit", hard)
    from carsctl.dispatch.task_catalog import resolve_task

    name, alias = _task_name(app, task)
    if hard is None:
        hard = resolve_task(app, name).time_limit or app.conf.task_time_limit
    if hard is not None and soft >= hard:
        raise UsageError(f"the soft limit ({soft:g}s) must be below the hard limit ({hard:g}s)",
                         hint="give a larger HARD, e.g. `carsctl control time-limit TASK 60 90`")
    return _apply(app, "time-limit", f"{alias} soft {soft:g}s hard {hard:g}s" if hard else f"{alias} soft {soft:g}s",
                  "time_limit", {"task_name": name, "soft": soft, "hard": hard},
                  destination, timeout, settings, _task_limits_reader(app, name, timeout, settings))


def resize_pool(app: Celery, direction: str, n: int, *, destination: list[str] | None = None,
                timeout: float = 1.0, settings: Settings | None = None) -> ControlReport:
    """Grow or shrink the workers' pools by `n`; the effect is the pool's processes before and after."""
    if direction not in ("grow", "shrink"):
        raise UsageError(f"unknown pool change {direction!r}", hint="grow or shrink")
    check_positive("N", n)
    nodes = _nodes(destination)
    start = _pool_processes(app, nodes, timeout, settings)  # also: exit 69 below when no node answers
    step = n if direction == "grow" else -n

    def read(accepted: list[str]) -> dict[str, Effect]:
        wanted = {node: max(1, count + step) for node, count in start.items() if count is not None and node in accepted}
        # a new process starts, and a stopped one is reaped, on the pool's next maintenance round
        now = _poll(lambda: _pool_processes(app, accepted, timeout, settings),
                    lambda counts: all(counts.get(node) == size for node, size in wanted.items()),
                    max(timeout, POOL_CHANGE_S))
        return {node: PoolSize(before=start.get(node), now=now.get(node)) for node in accepted}

    return _apply(app, f"pool {direction}", f"by {n}", f"pool_{direction}", {"n": n},
                  destination, timeout, settings, read)


def set_autoscale(app: Celery, maximum: int, minimum: int, *, destination: list[str] | None = None,
                  timeout: float = 1.0, settings: Settings | None = None) -> ControlReport:
    """Set the autoscale range of workers started with --autoscale; the effect is their range now."""
    check_positive("MAX", maximum)
    if minimum < 0 or minimum > maximum:
        raise UsageError(f"MIN must be between 0 and MAX ({maximum}), not {minimum}")

    def read(accepted: list[str]) -> dict[str, Effect]:
        stats = _broadcast_replies(app, "stats", {}, accepted, timeout, settings)
        effects: dict[str, Effect] = {}
        for node, data in stats.items():
            scaler = (data or {}).get("autoscaler") or {}
            processes = ((data or {}).get("pool") or {}).get("processes")
            effects[node] = AutoscaleRange(max=scaler.get("max"), min=scaler.get("min"),
                                           processes=len(processes) if isinstance(processes, list) else None)
        return effects

    return _apply(app, "autoscale", f"max {maximum} min {minimum}", "autoscale", {"max": maximum, "min": minimum},
                  destination, timeout, settings, read)


def add_consumer(app: Celery, queue: str, *, destination: list[str] | None = None, timeout: float = 1.0,
                 settings: Settings | None = None) -> ControlReport:
    """Make the workers consume from `queue` (a queue the app declares); the effect is their queues now."""
    return _change_consumer(app, "add-consumer", "add_consumer", queue, True, destination, timeout, settings)


def cancel_consumer(app: Celery, queue: str, *, destination: list[str] | None = None, timeout: float = 1.0,
                    settings: Settings | None = None) -> ControlReport:
    """Make the workers stop consuming from `queue`; the effect is the queues they consume now."""
    return _change_consumer(app, "cancel-consumer", "cancel_consumer", queue, False, destination, timeout, settings)


def _change_consumer(app: Celery, action: str, command: str, queue: str, consuming: bool,
                     destination: list[str] | None, timeout: float, settings: Settings | None) -> ControlReport:
    from carsctl.cluster.queue_ops import check_queue_names

    queue = check_queue_names(app, [queue])[0]

    def read(accepted: list[str]) -> dict[str, Effect]:
        now = _poll(lambda: _consumed_queues(app, accepted, timeout, settings),
                    lambda found: all((queue in found.get(node, [])) == consuming for node in accepted), timeout)
        return {node: ConsumedQueues(queues=now[node]) for node in accepted if node in now}

    return _apply(app, action, queue, command, {"queue": queue}, destination, timeout, settings, read)


def shutdown(app: Celery, node: str, *, timeout: float = 10.0, settings: Settings | None = None) -> ShutdownReport:
    """Ask one node to shut down (warm: running tasks finish) and wait until it no longer answers and,
    for a node carsctl started on this host, until its process exited (its state is then kept as stopped,
    so `worker status` does not report it as crashed)."""
    from datetime import UTC, datetime

    from carsctl.cluster.remote_control import broadcast, pid_running, require_replies
    from carsctl.process.nodes import forget_node, list_nodes

    target = _nodes([node]) or []
    ping = broadcast(app, "ping", {}, destination=target, timeout=min(timeout, 1.0) or 1.0, settings=settings)
    require_replies(ping, app=app, settings=settings)
    began = time.monotonic()
    broadcast(app, "shutdown", {}, destination=target, reply=False, timeout=timeout, settings=settings)
    stopped = _poll(lambda: not broadcast(app, "ping", {}, destination=target, timeout=0.5).replies,
                    bool, timeout)
    state = next((s for s in list_nodes(settings) if s.hostname == target[0]), None) if settings else None
    if stopped and state is not None and pid_running(state.pid, state.create_time) is not None:
        left = max(0.0, timeout - (time.monotonic() - began))
        stopped = _poll(lambda: pid_running(state.pid, state.create_time) is False, bool, left)
        if stopped and settings is not None:
            forget_node(settings, state, datetime.now(UTC).isoformat())
    return ShutdownReport(node=target[0], outcome=ShutdownOutcome.STOPPED if stopped else ShutdownOutcome.STILL_RUNNING,
                          waited_s=round(time.monotonic() - began, 1))


# --- the machinery --------------------------------------------------------------------------------

def _nodes(destination: list[str] | None) -> list[str] | None:
    from carsctl.process.nodes import node_hostname

    return [node_hostname(node) for node in destination] if destination else None


def _apply(app: Celery, action: str, request: str, command: str, arguments: dict[str, Any],
           destination: list[str] | None, timeout: float, settings: Settings | None,
           read_effect: Callable[[list[str]], dict[str, Effect]]) -> ControlReport:
    from carsctl.cluster.remote_control import broadcast, require_replies

    began = time.monotonic()
    outcome = broadcast(app, command, arguments, destination=_nodes(destination), timeout=timeout, settings=settings)
    require_replies(outcome, app=app, settings=settings)
    accepted = sorted(node for node, reply in outcome.replies.items() if not _is_error(reply))
    effects = read_effect(accepted) if accepted else {}
    nodes = [NodeChange(worker=node, outcome=NodeOutcome.REFUSED if _is_error(reply) else NodeOutcome.CHANGED,
                        reply=_reply_text(command, reply), effect=effects.get(node))
             for node, reply in sorted(outcome.replies.items())]
    nodes += [NodeChange(worker=node, outcome=NodeOutcome.SILENT, reply="", effect=None) for node in outcome.silent]
    return ControlReport(action=action, request=request, nodes=nodes, changed=len(accepted),
                         refused=sum(1 for n in nodes if n.outcome == NodeOutcome.REFUSED),
                         silent_unnamed=outcome.silent_unnamed, not_running=outcome.not_running,
                         elapsed_ms=round((time.monotonic() - began) * 1000, 1))


def _is_error(reply: Any) -> bool:
    return isinstance(reply, dict) and "error" in reply


def _reply_text(command: str, reply: Any) -> str:
    """The node's answer as one line: 'ok' text, or the error without the exception's repr."""
    if not isinstance(reply, dict):
        return str(reply)
    text = str(reply.get("ok") or reply.get("error") or "")
    if "error" in reply and command.startswith("pool_") and "has no attribute" in text:
        return "this pool cannot be resized (solo and threads pools have a fixed size; run prefork)"
    repr_form = re.fullmatch(r"(\w+)\((['\"])(.*)\2,?\)", text)
    return repr_form.group(3) if repr_form else text


def _broadcast_replies(app: Celery, command: str, arguments: dict[str, Any], nodes: list[str] | None, timeout: float,
                       settings: Settings | None) -> dict[str, Any]:
    from carsctl.cluster.remote_control import broadcast

    return broadcast(app, command, arguments, destination=nodes, timeout=timeout, settings=settings).replies


def _poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """`read()` until `done(value)` or the timeout passed (a worker applies some changes a moment later)."""
    deadline = time.monotonic() + max(timeout, 1.0)
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        value = read()
    return value


def _pool_processes(app: Celery, nodes: list[str] | None, timeout: float,
                    settings: Settings | None) -> dict[str, int | None]:
    """Per node, how many pool processes it has (prefork: its child pids; else its concurrency)."""
    counts: dict[str, int | None] = {}
    for node, data in _broadcast_replies(app, "stats", {}, nodes, timeout, settings).items():
        pool = (data or {}).get("pool") or {}
        processes = pool.get("processes")
        counts[node] = len(processes) if isinstance(processes, list) else pool.get("max-concurrency")
    return counts


def _consumed_queues(app: Celery, nodes: list[str], timeout: float, settings: Settings | None) -> dict[str, list[str]]:
    return {node: sorted(q.get("name") for q in data or [])
            for node, data in _broadcast_replies(app, "active_queues", {}, nodes, timeout, settings).items()}


def _task_limits_reader(app: Celery, name: str, timeout: float,
                        settings: Settings | None) -> Callable[[list[str]], dict[str, Effect]]:
    """Read the task's limits back from the nodes that accepted the change (`registered` with task info)."""
    def read(accepted: list[str]) -> dict[str, Effect]:
        replies = _broadcast_replies(app, "registered", {"taskinfoitems": TASK_INFO}, accepted, timeout, settings)
        return task_limits(replies, name)

    return read


def parse_task_info(entry: str) -> tuple[str, dict[str, str]]:
    """`'cars_bot.x [rate_limit=10/m time_limit=90]'` (a `registered` reply line) -> (name, fields)."""
    name, _, rest = entry.partition(" [")
    fields = dict(item.split("=", 1) for item in rest.rstrip("]").split() if "=" in item)
    return name, fields


def task_limits(replies: dict[str, Any], name: str) -> dict[str, Effect]:
    """TaskLimits of task `name` per node, from `registered` replies with TASK_INFO."""
    effects: dict[str, Effect] = {}
    for node, entries in replies.items():
        for entry in entries or []:
            found, fields = parse_task_info(entry)
            if found == name:
                rate = fields.get("rate_limit")
                effects[node] = TaskLimits(task=name, rate_limit=None if rate in ("0", "0.0", "None") else rate,
                                           soft_time_limit_s=_number(fields.get("soft_time_limit")),
                                           time_limit_s=_number(fields.get("time_limit")))
    return effects


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
