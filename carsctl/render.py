"""Tables and JSON. Never talks to Celery, Redis or the database: it only formats plain data.

User-supplied strings (post text, task arguments) are escaped before Rich sees them, so
`[bold]` in a post is shown, not interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carsctl.cluster.event_stream import LiveSnapshot, RateRow
    from carsctl.cluster.queue_ops import QueueRow, QueueTotals
    from carsctl.cluster.remote_control import NodeReplyRow, TaskRow, WorkerReply, WorkerStats
    from carsctl.cluster.runtime_control import ControlReport, Effect
    from carsctl.health.checkup import DoctorReport
    from carsctl.health.overview import StatusReport


def dump_json(data: Any) -> str:
    """The one JSON serialiser of `--json`: typed results (dataclasses) as objects with their field
    names as keys, StrEnum outcomes as their values, datetimes in ISO 8601, paths and the rest as text."""
    return json.dumps(data, ensure_ascii=False, indent=2, default=_json_default)


#: Telegram's HTML tags (parse_mode=HTML) -> the terminal style that reads the same.
_TELEGRAM_STYLES = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
                    "ins": "underline", "s": "strike", "strike": "strike", "del": "strike", "code": "cyan",
                    "pre": "cyan", "tg-spoiler": "reverse", "blockquote": "italic dim", "a": "underline blue"}


def telegram_html(text: str) -> Any:
    """A post's Telegram HTML as styled terminal text: <b> bold, <i> italic, <a href> a link, entities
    decoded; everything else is text (post text is data: no Rich markup is interpreted)."""
    from html.parser import HTMLParser

    from rich.style import Style
    from rich.text import Text

    result = Text()
    styles: list[Style] = []

    class Telegram(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            style = Style.parse(_TELEGRAM_STYLES.get(tag, "none"))
            href = dict(attrs).get("href") if tag == "a" else None
            styles.append(style + Style(link=href) if href else style)

        def handle_endtag(self, tag: str) -> None:
            if styles:
                styles.pop()

        def handle_data(self, data: str) -> None:
            result.append(data, style=Style.combine(styles) if styles else None)

    parser = Telegram(convert_charrefs=True)
    parser.feed(text)
    parser.close()
    return result


def dump_json_line(data: Any) -> str:
    """One compact JSON object on one line (NDJSON streams such as `carsctl events --json`)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        names = getattr(value, "JSON_NAMES", {})  # a field whose JSON key is a Python keyword (`from`)
        return {names.get(f.name, f.name): getattr(value, f.name) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def safe(value: Any) -> str:
    """A value as plain text for Rich: markup escaped, None as an empty string."""
    from rich.markup import escape

    if value is None:
        return ""
    return escape(value if isinstance(value, str) else str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          no_wrap: Sequence[str] = ()) -> Any:
    """A Rich table with every cell escaped that never breaks a word over two lines (`FittedTable`);
    `no_wrap` columns (ids) are never broken at all."""
    cells = [tuple("" if cell is None else str(cell) for cell in row) for row in rows]
    return FittedTable(title, tuple(columns), cells, tuple(no_wrap))


class FittedTable:
    """A table laid out for the width it is printed at, so that no word is split over two lines.

    Each column is at least as wide as its longest word (its header's included); only columns with
    free text (cells with spaces) are narrowed, down to that width, wrapping at word boundaries. When the
    words do not fit with the usual separators, the columns are separated by one space instead; when
    they do not fit even then, each row is shown as a block of "Column: value" lines (where only a word
    wider than the screen is folded).
    """

    def __init__(self, title: str | None, columns: tuple[str, ...], rows: list[tuple[str, ...]],
                 no_wrap: tuple[str, ...] = ()) -> None:
        from rich.cells import cell_len

        self.title, self.columns, self.rows, self.no_wrap = title, columns, rows, no_wrap
        texts = [[column, *(row[i] if i < len(row) else "" for row in rows)] for i, column in enumerate(columns)]
        self.natural = [max((cell_len(line) for text in cells for line in text.splitlines()), default=0)
                        for cells in texts]
        self.shortest = [
            natural if column in no_wrap else
            min(natural, max((cell_len(word) for text in cells for word in text.split()), default=0))
            for column, natural, cells in zip(columns, self.natural, texts, strict=True)]

    def widths(self, available: int) -> list[int] | None:
        """Column widths summing to at most `available` with every word whole, or None if none do."""
        widths = list(self.natural)
        excess = sum(widths) - available
        if sum(self.shortest) > available:
            return None
        while excess > 0:  # narrow the widest column that can still be narrowed, one cell at a time
            slack = [(width, i) for i, width in enumerate(widths) if width > self.shortest[i]]
            _width, widest = max(slack)
            widths[widest] -= 1
            excess -= 1
        return widths

    def renderable(self, width: int) -> Any:
        count = len(self.columns)
        for compact, overhead in ((False, 3 * count - 1), (True, count - 1)):
            widths = self.widths(width - overhead)
            if widths is not None:
                return self._table(widths, compact)
        return self._records()

    def _table(self, widths: list[int], compact: bool) -> Any:
        from rich import box
        from rich.table import Table

        result = Table(title=self.title, title_justify="left", show_edge=False, header_style="bold",
                       show_header=any(self.columns), box=None if compact else box.HEAVY_HEAD,
                       pad_edge=not compact, collapse_padding=compact)
        for column, width in zip(self.columns, widths, strict=True):
            result.add_column(column, overflow="fold", width=max(width, 1), no_wrap=column in self.no_wrap)
        for row in self.rows:
            result.add_row(*(safe(cell) for cell in row))
        return result

    def _records(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        parts: list[Any] = [safe(self.title)] if self.title else []
        for number, row in enumerate(self.rows):
            record = Table.grid(padding=(0, 1))
            record.add_column(style="bold", no_wrap=True)
            record.add_column(overflow="fold")
            for column, cell in zip(self.columns, row, strict=False):
                record.add_row(safe(f"{column}:" if column else ""), safe(cell))
            parts += [""] * (number > 0) + [record]
        return Group(*parts)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield self.renderable(options.max_width)

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement.get(console, options, self.renderable(options.max_width))


def key_values(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Any:
    """A two-column table of names and values."""
    return table(title, ("", ""), ((name, value) for name, value in pairs))


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'12s ago', '3m ago', '5h ago', 'in 2m' (empty for None)."""
    if moment is None:
        return ""
    from datetime import UTC

    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    """'0.4s', '12s', '3m05s', '2h03m' (empty for None)."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def limit(seconds: float | None) -> str:
    """A time limit, compactly: '90s', '5m', '1h'."""
    if not seconds:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" + (f"{seconds % 60:02d}s" if seconds % 60 else "")


def call_args(args: Any, kwargs: Any = None, width: int = 60) -> str:
    """Task arguments as a call would show them: `42, "text"`, `days_old=7`, shortened to `width`."""
    if isinstance(args, list | tuple):
        parts = [json.dumps(arg, ensure_ascii=False, default=str) for arg in args]
    else:  # older workers report arguments as a repr string
        parts = [str(args)] if args not in (None, "") else []
    if isinstance(kwargs, dict):
        parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in kwargs.items()]
    elif kwargs not in (None, "", "{}"):
        parts.append(str(kwargs))
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def short_time(value: Any) -> str:
    """An ISO/datetime moment as local 'YYYY-MM-DD HH:MM:SS' with its distance from now."""
    if value in (None, ""):
        return ""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone():%m-%d %H:%M:%S} ({ago(moment)})"


def task_table(title: str, rows: Sequence[TaskRow], kind: str = "active") -> Any:
    """Tasks held by workers: no Python reprs, arguments as data; the runtime of active tasks, the ETA
    of scheduled ones."""
    extra = {"active": ("Runtime", lambda r: duration(r.runtime_s)),
             "scheduled": ("ETA", lambda r: short_time(r.eta))}.get(kind)
    columns = ("Worker", "Task", "ID", "Args", *((extra[0],) if extra else ()), "Pri")
    return table(title, columns, (
        (r.worker, r.alias or r.name, r.id, call_args(r.args, r.kwargs, width=40),
         *((extra[1](r),) if extra else ()), r.priority) for r in rows), no_wrap=("ID",))


def node_table(command: str, rows: Sequence[NodeReplyRow]) -> Any:
    """stats / queues / registered / revoked / ping replies, one row per node (silent nodes included)."""
    columns, title, cells = _NODE_VIEWS.get(command, _NODE_VIEWS["ping"])
    silent = ("silent",) + ("",) * (len(columns) - 2)
    return table(title, columns, ((r.worker, *(silent if getattr(r, "silent", False) else cells(r))) for r in rows))


def _stats_cells(r: WorkerStats) -> tuple[Any, ...]:
    pool = (r.pool or "").rsplit(".", 1)[-1].removesuffix(":TaskPool")
    rss = f"{r.max_rss_kb // 1024} MB" if r.max_rss_kb else ""
    return r.pid, pool, r.concurrency, r.processed, duration(r.uptime_s), rss


def _ping_cell(r: WorkerReply) -> tuple[Any, ...]:
    reply = r.reply
    return (reply.get("ok", reply) if isinstance(reply, dict) else reply,)


_NODE_VIEWS: dict[str, tuple[tuple[str, ...], str, Any]] = {
    "stats": (("Worker", "PID", "Pool", "Procs", "Done", "Uptime", "Max RSS"), "Worker stats",
              _stats_cells),
    "active_queues": (("Worker", "Queues"), "Queues consumed", lambda r: (", ".join(r.queues),)),
    "registered": (("Worker", "Count", "Tasks"), "Registered tasks",
                   lambda r: (len(r.items), "\n".join(r.items))),
    "revoked": (("Worker", "Count", "Task ids"), "Revoked task ids",
                lambda r: (len(r.items), "\n".join(r.items))),
    "ping": (("Worker", "Reply"), "Ping", _ping_cell),
}


def control_table(report: ControlReport) -> Any:
    """`carsctl control`: one row per addressed node, its outcome and what it now runs with."""
    title = f"{report.action} {report.request}"
    return table(title, ("Worker", "Result", "Now"), (
        (n.worker, n.outcome if n.outcome != "refused" else f"refused: {n.reply}", effect_text(n.effect))
        for n in report.nodes))


def effect_text(effect: Effect | None) -> str:
    """A node's state after a control command, as one short line."""
    from carsctl.cluster.runtime_control import AutoscaleRange, ConsumedQueues, PoolSize, TaskLimits

    if isinstance(effect, TaskLimits):
        return (f"rate {effect.rate_limit or 'none'}, soft {limit(effect.soft_time_limit_s)}, "
                f"hard {limit(effect.time_limit_s)}")
    if isinstance(effect, PoolSize):
        return f"{effect.before} -> {effect.now} processes"
    if isinstance(effect, AutoscaleRange):
        return f"max {effect.max}, min {effect.min}, {effect.processes} processes now"
    if isinstance(effect, ConsumedQueues):
        return ", ".join(effect.queues) or "no queue"
    return ""


def live_screen(snapshot: LiveSnapshot) -> Any:
    """`carsctl events`: rates per task and per node over the window, queue depths, the last failures."""
    from rich.console import Group

    from cars_bot.task_names import task_alias

    window = limit(snapshot.window_s)
    heading = (f"last {window}: {plural(len(snapshot.nodes_online), 'node')} heard from "
               f"({', '.join(snapshot.nodes_online) or 'none yet'}), {snapshot.events} task events since start")
    parts: list[Any] = [safe(heading)]
    columns = ("Sent", "Recv", "Start", "OK", "Fail", "Retry", "p50", "p95")
    for title, rows, name in (("Tasks", snapshot.tasks, lambda r: task_alias(r.key) if "." in r.key else r.key),
                              ("Nodes", snapshot.nodes, lambda r: r.key)):
        sent = title == "Tasks"  # clients send tasks, nodes receive them
        parts.append(table(f"{title} (last {window})", (title[:-1], *columns[0 if sent else 1:]), (
            (name(r), *_rate_cells(r)[0 if sent else 1:]) for r in rows)) if rows
            else safe(f"{title}: no task events yet"))
    if snapshot.queues:
        parts.append(table("Queues", ("Queue", "Ready", "By priority", "Unacked"), (
            (q.queue, q.ready, priorities(q.by_priority), q.unacked) for q in snapshot.queues)))
    if snapshot.failures:
        parts.append(table("Last failures", ("When", "Node", "Task", "Error"), (
            (_clock(f.at), f.node, task_alias(f.task) if f.task else "", f"{f.type}: {f.error}")
            for f in snapshot.failures)))
    return Group(*parts)


def _clock(at: str | None) -> str:
    """An ISO moment as local HH:MM:SS (the live screen's failures are all recent)."""
    return f"{datetime.fromisoformat(at).astimezone():%H:%M:%S}" if at else ""


def _rate_cells(r: RateRow) -> tuple[Any, ...]:
    return (r.sent, r.received, r.started, r.succeeded, r.failed, r.retried, duration(r.runtime_p50_s),
            duration(r.runtime_p95_s))


def priorities(by_priority: dict[str, int]) -> str:
    """{'9': 3, '5': 10} -> 'p9:3 p5:10' (most urgent first)."""
    return " ".join(f"p{level}:{count}" for level, count in by_priority.items())


def queue_table(title: str, rows: Sequence[QueueRow], totals: QueueTotals | None = None) -> Any:
    """Queue depths: ready (with its priority levels), unacked, scheduled (ETA) and total."""
    with_eta = any(r.scheduled is not None for r in rows)
    body = [(r.queue, r.ready, priorities(r.by_priority), r.unacked, *((r.scheduled,) if with_eta else ()), r.total)
            for r in rows]
    if totals:
        body.append(("total", totals.ready, "", totals.unacked, *((totals.scheduled,) if with_eta else ()),
                     totals.total))
    columns = ("Queue", "Ready", "By priority", "Unacked", *(("of which ETA",) if with_eta else ()), "Total")
    return table(title, columns, body)


def plural(count: int, word: str) -> str:
    """'1 message', '112 messages'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def status_screen(report: StatusReport) -> Any:
    """`carsctl status` as one Rich renderable: services, nodes, queues, problems."""
    from rich.console import Group

    broker, database, beat, monitor = report.broker, report.database, report.beat, report.monitor
    if broker.reachable:
        broker_text = f"reachable, Redis {broker.version}, {broker.used_memory} used" if broker.version else "reachable"
    else:
        broker_text = f"UNREACHABLE: {broker.error}"
    services = key_values("Services", (
        ("broker", broker_text),
        ("database", f"reachable, {plural(database.failed_tasks or 0, 'failed task')}" if database.reachable
         else f"UNREACHABLE: {database.error}"),
        ("beat", beat.state + (f", last tick {ago(beat.last_tick)}" if beat.last_tick else "")),
        ("monitor", monitor.state),
    ))
    nodes = table("Workers", ("Node", "State", "PID", "Procs", "Active", "Reserved", "Done", "Uptime"), (
        (n.node, n.state, n.pid, n.concurrency, n.active, n.reserved, n.processed, duration(n.uptime_s))
        for n in report.nodes)) if report.nodes else "Workers: none running (start one with `carsctl worker start`)"
    parts = [services, nodes]
    for n in report.nodes:
        if n.state == "crashed":
            parts.append(safe(f"{n.node} {n.note}" + "".join(f"\n  {line}" for line in n.last_errors)))
    if report.queues:
        starved, consumers = {q.queue for q in report.unconsumed}, report.queue_consumers
        parts.append(table("Queues", ("Queue", "Ready", "By priority", "Unacked",
                                      *(("Consumers",) if consumers is not None else ())), (
            (q.queue, q.ready, priorities(q.by_priority), q.unacked,
             *(("NONE" if q.queue in starved else len(consumers.get(q.queue, [])),) if consumers is not None else ()))
            for q in report.queues)))
    return Group(*parts)


def doctor_report(report: DoctorReport) -> Any:
    """Findings, worst first, each with its fix; then the counts."""
    from rich.console import Group
    from rich.text import Text

    from carsctl.health.checkup import Level

    marks = {Level.PROBLEM: ("✗", "red"), Level.WARNING: ("!", "yellow"), Level.OK: ("✓", "green")}
    order = {Level.PROBLEM: 0, Level.WARNING: 1, Level.OK: 2}
    lines = []
    for item in sorted(report.findings, key=lambda f: order[f.level]):
        mark, style = marks[item.level]
        line = Text.assemble((f"{mark} ", style), (f"{item.check}: ", "bold"), item.message)
        if item.fix and item.level != Level.OK:
            line.append(f"\n    fix: {item.fix}", style="dim")
        lines.append(line)
    counts = report.counts
    lines.append(Text(f"{plural(counts.problem, 'problem')}, {plural(counts.warning, 'warning')}, {counts.ok} ok"))
    return Group(*lines)
