"""Every table reads well at 80 columns: no word is split over two lines, no line is wider than the screen.

Every table carsctl prints is built by `carsctl.render.table`; the first test finds each call in the source
(its column names) and fills it with representative data, so a table added later is checked too. The
others run commands (or the render functions whose columns are computed) with real data.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from carsctl import render
from tests.carsctl.cli import invoke

ROOT = Path(__file__).resolve().parents[2]
BOX = str.maketrans({c: " " for c in "│┃━╇─"})

# Wide, realistic values per column name (lower-cased); a column not listed gets DEFAULT.
REPRESENTATIVE = {
    "alias": "generate-description", "task": "cars_bot.tasks.ai_tasks.generate_description_task",
    "arguments": "original_text: str, car_data_json: str | None = None", "args": "(42, 'Продам BMW 3 серии')",
    "queue": "ai_processing", "queues": "ai_processing,publishing,sheets_sync", "node": "ai_processing@cars-host-01",
    "worker": "ai_processing@cars-host-01", "status": "not-responding", "state": "not-responding",
    "note": "stopped outside carsctl: exit code 137 (SIGKILL), see the log", "pid": "1234567", "pool": "prefork/16",
    "up": "3d04h12m", "uptime": "3d04h12m", "id": "1f0c2a9e-6f0b-4b7e-9d7e-0c3b2f1e4a5d",
    "exception": "JSONDecodeError: Expecting value: line 1 column 1 (char 0)", "error": "OperationalError: connection "
    "refused", "failed": "11-30 07:15:49", "periodic": "cron 0 3 * * *", "limits": "3m/3m30s", "retries": "5",
    "pri": "9", "schedule": "every 900s", "entry": "cleanup-old-results-daily", "last run": "11-30 07:15:49 (2m ago)",
    "next run": "11-30 08:15:49 (in 58m)", "by priority": "p9:3 p5:10 p0:1000", "reason": "rejected: not a car-sale "
    "ad (confidence 0.93)", "why / where": "published to @cars_channel_moscow as message 1234",
    "variable": "TELEGRAM_MONITOR_SESSION_STRING", "value": "postgresql://cars:****@db.example.com:5432/cars",
    "source": "environment", "channel": "@cars_channel_moscow", "car": "Mercedes-Benz E-Класс 2019",
    "price": "2 850 000 ₽", "worksheet": "Настройки фильтров", "result": "refused: unknown task",
    "now": "rate limit 10/m, soft 30s, hard 60s",
}
DEFAULT = "representative-value-1234"


def split_words(renderable: Any, width: int = 80) -> list[str]:
    """Words in `renderable` printed at `width` that are not whole words of its cells (pieces of a split
    word), after checking that no line is wider than `width`."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    lines = console.file.getvalue().splitlines()
    assert all(cell_len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    allowed, beside = set(), 0  # beside: the widest "Column: " a record shows a value after
    for table in _tables(renderable):
        beside = max([beside, *(cell_len(column) + 2 for column in table.columns)])
        for text in (table.title or "", *table.columns, *(cell for row in table.rows for cell in row)):
            allowed |= set(text.split())
        allowed |= {word for column in table.columns for word in f"{column}:".split()}
    wider = [word for word in allowed if cell_len(word) > width - beside]  # folded wherever they are shown
    return [word for line in lines for word in line.translate(BOX).split()
            if word not in allowed and not any(word in long for long in wider)]


def _tables(renderable: Any) -> list[render.FittedTable]:
    if isinstance(renderable, render.FittedTable):
        return [renderable]
    return [t for child in getattr(renderable, "renderables", ()) for t in _tables(child)]


def table_calls() -> list[tuple[str, tuple[str, ...]]]:
    """Every `table(...)` call in carsctl: where, and its literal column names."""
    found = []
    for path in sorted((ROOT / "carsctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "table" \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Tuple):
                names = tuple(n.value for n in ast.walk(node.args[1]) if isinstance(n, ast.Constant)
                              and isinstance(n.value, str))
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", names))
    return found


def test_the_source_has_the_tables_this_file_checks() -> None:
    assert len(table_calls()) >= 15


@pytest.mark.parametrize(("where", "columns"), table_calls(), ids=[where for where, _ in table_calls()])
@pytest.mark.parametrize("width", [80, 60, 120])
def test_every_table_keeps_its_words_whole(where: str, columns: tuple[str, ...], width: int) -> None:
    rows = [tuple(REPRESENTATIVE.get(c.lower(), DEFAULT) for c in columns),
            tuple("" if i % 2 else REPRESENTATIVE.get(c.lower(), DEFAULT)[:8] for i, c in enumerate(columns))]
    assert split_words(render.table("Title of the table", columns, rows, no_wrap=("ID",)), width) == []


def test_computed_columns_keep_their_words_whole() -> None:
    from carsctl.cluster.remote_control import TaskRow

    task = TaskRow(worker=REPRESENTATIVE["worker"], name=REPRESENTATIVE["task"], alias="generate-description",
                   id=REPRESENTATIVE["id"], args=["Продам BMW 3 серии 2015 года, один владелец"], kwargs={},
                   started_at=None, runtime_s=3725.0, eta="2026-11-30T08:15:49+00:00", priority=9,
                   queue="ai_processing", worker_pid=1234567, acknowledged=True)
    for kind in ("active", "reserved", "scheduled"):
        assert split_words(render.task_table("Active tasks", [task, task], kind=kind)) == []
    for columns, title, _cells in render._NODE_VIEWS.values():
        rows = [(REPRESENTATIVE["worker"], *(REPRESENTATIVE.get(c.lower(), DEFAULT) for c in columns[1:]))]
        assert split_words(render.table(title, columns, rows)) == []


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[render.FittedTable]:
    """The tables a command builds (it still prints them)."""
    tables: list[render.FittedTable] = []
    original = render.table

    def capture(*args: Any, **kwargs: Any) -> render.FittedTable:
        tables.append(original(*args, **kwargs))
        return tables[-1]

    monkeypatch.setattr(render, "table", capture)
    return tables


def check_command(captured: list[render.FittedTable], *args: str) -> str:
    result = invoke(*args, env={"COLUMNS": "80"})
    assert result.exit_code in (0, 3), result.output
    assert captured, "the command printed no table"
    assert all(cell_len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    for table in captured:
        assert split_words(table) == [], table.title
    return result.stdout


def test_task_list_at_80_columns(captured, settings) -> None:
    text = check_command(captured, "task", "list")
    assert "ai_processing" in text and "generate-description" in text and "Arguments" in text


def test_beat_status_at_80_columns(captured, settings) -> None:
    assert "not-running" in check_command(captured, "beat", "status")


def test_worker_status_at_80_columns(captured, settings, monkeypatch) -> None:
    from carsctl.lifecycle.node_results import NodeStatus, NodeStatusRow
    from carsctl.reports import report_status

    names = {f.name for f in dataclasses.fields(NodeStatusRow) if f.init}
    values = {name: None for name in names} | {
        "name": "ai_processing", "hostname": "ai_processing@cars-host-01", "status": NodeStatus.NOT_RESPONDING,
        "queues": ("ai_processing", "publishing", "sheets_sync"), "concurrency": 16, "pool": "prefork",
        "loglevel": "info", "logfile": "/var/log/cars/ai_processing.log", "pidfile": "/run/cars/ai.pid",
        "pid": 1234567, "include": (), "cwd": "/srv/cars", "uptime_seconds": 273_600.0,
        "note": "answers no ping within 5s: busy, or stuck in a task", "last_errors": ()}
    row = NodeStatusRow(**{k: v for k, v in values.items() if k in names})

    class Cli:
        json = False
        out = Console(file=io.StringIO(), width=80, color_system=None)

        def info(self, text: str) -> None:
            pass

    report_status(Cli(), [row, row], json=False)
    assert captured and split_words(captured[0]) == []
    assert "not-responding" in Cli.out.file.getvalue()


@pytest.mark.redis
def test_queues_at_80_columns(captured, celery_app_real, redis_client, settings) -> None:
    for priority in (0, 5, 9):
        invoke("task", "run", "collect-stats", "--priority", str(priority), "--countdown", str(priority))
        invoke("task", "run", "collect-stats", "--priority", str(priority))
    assert "monitoring" in check_command(captured, "queues")


@pytest.mark.redis
@pytest.mark.db
def test_task_failed_at_80_columns(captured, db, settings) -> None:
    from cars_bot.db.models import FailedTask

    with db.begin() as session:
        for n in range(3):
            session.add(FailedTask(task_id=f"0a1b2c3d-0000-4000-8000-00000000000{n}",
                                   task_name="cars_bot.tasks.ai_tasks.generate_description_task",
                                   args=json.loads('["Продам BMW 3 серии 2015 года", "{\\"brand\\": \\"BMW\\"}"]'),
                                   kwargs={}, exception="JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
                                   traceback="Traceback ...", queue="ai_processing"))
    assert "JSONDecodeError:" in check_command(captured, "task", "failed")
