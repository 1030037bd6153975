"""Celery's event stream for `carsctl events`: the events as typed records, and their aggregation.

Workers publish an event per task transition (received, started, succeeded, failed, retried, ...) and a
heartbeat every few seconds; `watch` consumes them with Celery's EventReceiver (no polling of the
workers). `LiveStats` keeps the last minute of them and answers, per task name and per node, how many
were sent / received / started / succeeded / failed / retried, the runtime p50 and p95, and the last failures
with their errors. It is plain Python (no Celery), so it is tested without a worker.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from carsctl.cluster.queue_ops import QueueRow

WINDOW_S = 60.0
TICK_S = 0.25            # how often the screen is redrawn while no event arrives
KEPT_FAILURES = 8
KNOWN_TASK_IDS = 20_000  # task id -> name (only `task-received` carries the name)
COUNTED = ("sent", "received", "started", "succeeded", "failed", "retried")


class StopCause(StrEnum):
    """Why `watch` returned."""

    DURATION = "duration"        # --duration passed
    COUNT = "count"              # --count events arrived
    INTERRUPTED = "interrupted"  # Ctrl-C


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event as carsctl shows and streams it (`--json`: one per line)."""

    type: str                  # task-received, task-succeeded, ..., worker-online, worker-heartbeat
    at: str | None             # when the worker sent it (ISO 8601, UTC)
    node: str
    task_id: str | None
    task: str | None           # the task name (known from its task-received event)
    runtime_s: float | None    # task-succeeded
    error: str | None          # task-failed / task-retried: "ValueError: message"
    queue: str | None          # task-received: the queue it came from


@dataclass(frozen=True, slots=True)
class RateRow:
    """Events of one task name or one node in the window, and the runtimes of its successes."""

    key: str
    sent: int                  # published by a client (carsctl, beat, another task): the load coming in
    received: int
    started: int
    succeeded: int
    failed: int
    retried: int
    runtime_p50_s: float | None
    runtime_p95_s: float | None


@dataclass(frozen=True, slots=True)
class FailureRow:
    """A failed (or retried) task: when, where, which, and its error."""

    at: str | None
    node: str
    task: str | None
    task_id: str | None
    type: str
    error: str


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """What the live screen shows at one moment."""

    window_s: float
    events: int                 # task events seen since the start
    nodes_online: list[str]     # worker nodes heard from (any event but task-sent) within the window
    tasks: list[RateRow]
    nodes: list[RateRow]
    failures: list[FailureRow]  # newest first
    queues: list[QueueRow]


@dataclass(frozen=True, slots=True)
class WatchSummary:
    events: int
    elapsed_s: float
    stopped_because: StopCause


_REPR = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<quote>['\"]?)(?P<message>.*)(?P=quote),?\)$", re.S)


_CLASS_FALLBACK = re.compile(r"^(?:Exception: )?<class '(?P<name>[\w.]+)'>\((?P<message>.*)\)$", re.S)


def error_text(exception: Any) -> str:
    """An exception as an event (a repr) or a result carries it, as `Name: message`.

    `JSONDecodeError('Expecting value: line 1 column 1 (char 0)')` -> `JSONDecodeError: Expecting value: ...`;
    so is Celery's stand-in for an exception it could not rebuild from a JSON result
    (`Exception: <class 'json.decoder.JSONDecodeError'>(Expecting value: ...)`). An exception object is
    shown as its class name and message.
    """
    if isinstance(exception, BaseException):
        exception = f"{type(exception).__name__}: {exception}" if str(exception) else type(exception).__name__
    text = str(exception or "").strip()
    fallback = _CLASS_FALLBACK.match(text) or _CLASS_FALLBACK.match(text.removeprefix("Exception: "))
    if fallback:
        return f"{fallback.group('name').rsplit('.', 1)[-1]}: {_arguments_text(fallback.group('message'))}"
    found = _REPR.match(text)
    if not found:
        return text
    name, message = found.group("name").rsplit(".", 1)[-1], found.group("message")
    return f"{name}: {message}" if message else name


def _arguments_text(message: str) -> str:
    """`['Expecting value', 3]` (the exception's arguments, as Celery formats them) -> `Expecting value, 3`."""
    if message[:1] in "[(" and message[-1:] in "])":
        import ast

        try:
            values = ast.literal_eval(message)
        except (ValueError, SyntaxError):
            return message
        if isinstance(values, list | tuple):
            return ", ".join(str(value) for value in values)
    return message


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _iso(timestamp: Any) -> str | None:
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


class LiveStats:
    """The last `window_s` seconds of events, aggregated on demand (`snapshot`)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.clock = clock
        self.names: OrderedDict[str, str] = OrderedDict()
        self.recent: deque[tuple[float, StreamEvent]] = deque()
        self.heard: dict[str, float] = {}
        self.failures: deque[FailureRow] = deque(maxlen=KEPT_FAILURES)
        self.events = 0

    def event(self, raw: dict[str, Any]) -> StreamEvent:
        """A raw Celery event as a StreamEvent, its task name filled in from its task-received event."""
        kind = str(raw.get("type", ""))
        task_id = raw.get("uuid")
        name = raw.get("name")
        if task_id and name:
            self.names[task_id] = name
            if len(self.names) > KNOWN_TASK_IDS:
                self.names.popitem(last=False)
        elif task_id:
            name = self.names.get(task_id)
        error = raw.get("exception")
        runtime = raw.get("runtime")
        return StreamEvent(type=kind, at=_iso(raw.get("timestamp")), node=str(raw.get("hostname", "")),
                           task_id=task_id, task=name, runtime_s=round(float(runtime), 4) if runtime is not None
                           else None, error=error_text(error) if error else None, queue=raw.get("routing_key"))

    def add(self, event: StreamEvent) -> None:
        now = self.clock()
        if event.node and event.type != "task-sent":  # task-sent comes from the client, not a worker
            self.heard[event.node] = now
        if not event.type.startswith("task-"):
            return
        self.events += 1
        self.recent.append((now, event))
        if event.type in ("task-failed", "task-retried"):
            self.failures.appendleft(FailureRow(at=event.at, node=event.node, task=event.task, task_id=event.task_id,
                                                type=event.type.removeprefix("task-"), error=event.error or ""))
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()

    def snapshot(self, queues: list[QueueRow] | None = None) -> LiveSnapshot:
        now = self.clock()
        self._prune(now)
        events = [event for _, event in self.recent]
        return LiveSnapshot(
            window_s=self.window_s, events=self.events,
            nodes_online=sorted(node for node, seen in self.heard.items() if seen >= now - self.window_s),
            tasks=_rows(events, lambda e: e.task or "(unknown)"),
            nodes=_rows([e for e in events if e.type != "task-sent"], lambda e: e.node),
            failures=list(self.failures), queues=queues or [])


def _rows(events: list[StreamEvent], key: Callable[[StreamEvent], str]) -> list[RateRow]:
    groups: dict[str, list[StreamEvent]] = {}
    for event in events:
        groups.setdefault(key(event), []).append(event)
    rows = []
    for name, group in groups.items():
        counts = {kind: sum(1 for e in group if e.type == f"task-{kind}") for kind in COUNTED}
        runtimes = [e.runtime_s for e in group if e.type == "task-succeeded" and e.runtime_s is not None]
        p50, p95 = percentile(runtimes, 50), percentile(runtimes, 95)
        rows.append(RateRow(key=name, **counts, runtime_p50_s=round(p50, 4) if p50 is not None else None,
                            runtime_p95_s=round(p95, 4) if p95 is not None else None))
    return sorted(rows, key=lambda r: (-(r.sent + r.received + r.succeeded + r.failed), r.key))


class QueueDepths:
    """Queue depths for the live screen, read from the broker at most every `every_s` seconds (the
    events say what the workers do; what waits in the queues only the broker knows)."""

    def __init__(self, app: Celery, every_s: float = 2.0) -> None:
        self.app, self.every_s = app, every_s
        self.rows: list[QueueRow] = []
        self.read_at = float("-inf")

    def __call__(self) -> list[QueueRow]:
        if time.monotonic() - self.read_at >= self.every_s:
            from carsctl.cluster.queue_ops import depths
            from carsctl.errors import CarsctlError

            self.read_at = time.monotonic()
            try:
                self.rows = depths(self.app, with_scheduled=False).queues
            except CarsctlError:  # the broker went away: the event stream ends too; keep the last figures
                pass
        return self.rows


def is_task_event(raw: dict[str, Any]) -> bool:
    """A task's event (what `--count` counts), not a worker's (online, offline, heartbeat)."""
    return str(raw.get("type", "")).startswith("task-")


@contextmanager
def ctrl_c_as_a_flag() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) sets the returned event instead of raising KeyboardInterrupt wherever the main
    thread happens to be (a screen half drawn, a library's clean-up): `watch` ends at its next tick."""
    import signal

    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def watch(app: Celery, on_event: Callable[[dict[str, Any]], None], on_tick: Callable[[], None], *,
          duration: float | None = None, count: int | None = None,
          counts: Callable[[dict[str, Any]], bool] = is_task_event,
          interrupted: threading.Event | None = None) -> WatchSummary:
    """Consume the event stream until `duration` passed, `count` counted (task) events arrived, or Ctrl-C.

    `on_event` gets every raw event; `on_tick` runs after each event and every TICK_S while idle (the
    screen's redraw). Raises DependencyUnavailable when the broker cannot be reached.
    """
    from carsctl.cluster.remote_control import connected

    began = time.monotonic()
    seen = 0
    cause = StopCause.INTERRUPTED
    try:  # Ctrl-C at any moment, connecting included, ends the watch normally
        with connected(app) as conn:
            receiver = app.events.Receiver(conn, handlers={"*": lambda raw: handle(raw)})

            def handle(raw: dict[str, Any]) -> None:
                nonlocal seen, cause
                on_event(raw)
                if counts(raw):
                    seen += 1
                    if count is not None and seen >= count:
                        cause, receiver.should_stop = StopCause.COUNT, True

            def tick() -> None:
                nonlocal cause
                on_tick()
                if interrupted is not None and interrupted.is_set() and not receiver.should_stop:
                    cause, receiver.should_stop = StopCause.INTERRUPTED, True
                if duration is not None and time.monotonic() - began >= duration and not receiver.should_stop:
                    cause, receiver.should_stop = StopCause.DURATION, True

            receiver.on_iteration = tick
            for _ in receiver.consume(limit=None, timeout=None, safety_interval=TICK_S, wakeup=True):
                pass
    except KeyboardInterrupt:
        cause = StopCause.INTERRUPTED
    return WatchSummary(events=seen, elapsed_s=round(time.monotonic() - began, 2), stopped_because=cause)
