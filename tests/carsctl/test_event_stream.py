"""The live view's aggregation (`cluster/event_stream.py`): rates over the window, percentiles, failures."""

from __future__ import annotations

import pytest

from carsctl.cluster.event_stream import LiveStats, error_text, percentile

TASK = "cars_bot.tasks.ai_tasks.process_post_task"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _feed(stats: LiveStats, *events: dict) -> None:
    for raw in events:
        stats.add(stats.event({"timestamp": 1_700_000_000.0, **raw}))


def _run(task_id: str, node: str = "ai@h", runtime: float = 1.0, name: str = TASK) -> list[dict]:
    return [{"type": "task-sent", "uuid": task_id, "name": name, "hostname": "gen1@h"},
            {"type": "task-received", "uuid": task_id, "name": name, "hostname": node},
            {"type": "task-started", "uuid": task_id, "hostname": node},
            {"type": "task-succeeded", "uuid": task_id, "hostname": node, "runtime": runtime}]


def test_percentiles_interpolate_and_are_none_without_values() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)


def test_counts_per_task_and_per_node_with_runtime_percentiles() -> None:
    stats = LiveStats(clock=Clock())
    for i in range(10):
        _feed(stats, *_run(f"t{i}", node="ai@h" if i < 6 else "pub@h", runtime=float(i + 1)))
    snap = stats.snapshot()
    (row,) = snap.tasks
    assert (row.key, row.sent, row.received, row.started, row.succeeded, row.failed) == (TASK, 10, 10, 10, 10, 0)
    assert row.runtime_p50_s == 5.5 and row.runtime_p95_s == pytest.approx(9.55)
    by_node = {r.key: (r.received, r.succeeded, r.runtime_p50_s) for r in snap.nodes}
    assert by_node == {"ai@h": (6, 6, 3.5), "pub@h": (4, 4, 8.5)}  # the client that sent them is no node row
    assert snap.nodes_online == ["ai@h", "pub@h"] and snap.events == 40


def test_events_older_than_the_window_drop_out_of_the_rates() -> None:
    clock = Clock()
    stats = LiveStats(window_s=60, clock=clock)
    _feed(stats, *_run("old"))
    clock.now += 61
    _feed(stats, *_run("new", runtime=2.0))
    (row,) = stats.snapshot().tasks
    assert (row.received, row.succeeded, row.runtime_p50_s) == (1, 1, 2.0)
    clock.now += 61
    snap = stats.snapshot()
    assert snap.tasks == [] and snap.nodes_online == [] and snap.events == 8  # the total since start stays


def test_failures_newest_first_with_the_task_name_and_a_readable_error() -> None:
    stats = LiveStats(clock=Clock())
    _feed(stats, {"type": "task-received", "uuid": "a", "name": TASK, "hostname": "ai@h"},
          {"type": "task-retried", "uuid": "a", "hostname": "ai@h", "exception": "TransientError('rate limited')"},
          {"type": "task-failed", "uuid": "a", "hostname": "ai@h",
           "exception": "JSONDecodeError('Expecting value: line 1 column 1 (char 0)')"})
    first, second = stats.snapshot().failures
    assert (first.type, first.task) == ("failed", TASK)
    assert first.error == "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    assert (second.type, second.error) == ("retried", "TransientError: rate limited")
    (row,) = stats.snapshot().tasks
    assert (row.failed, row.retried) == (1, 1)


def test_an_event_whose_received_was_missed_counts_under_unknown() -> None:
    stats = LiveStats(clock=Clock())
    _feed(stats, {"type": "task-succeeded", "uuid": "z", "hostname": "ai@h", "runtime": 0.5})
    assert [r.key for r in stats.snapshot().tasks] == ["(unknown)"]


@pytest.mark.parametrize(("raw", "text"), [
    ("ValueError('bad value')", "ValueError: bad value"),
    ('KeyError("post 42")', "KeyError: post 42"),
    ("json.decoder.JSONDecodeError('Expecting value')", "JSONDecodeError: Expecting value"),
    ("SoftTimeLimitExceeded()", "SoftTimeLimitExceeded"),
    ("plain message", "plain message"),
    ("Exception: <class 'json.decoder.JSONDecodeError'>(Expecting value: line 1 column 1 (char 0))",
     "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    (Exception("<class 'json.decoder.JSONDecodeError'>(Expecting value)"), "JSONDecodeError: Expecting value"),
    (Exception("<class 'json.decoder.JSONDecodeError'>(['Expecting value: line 1 column 1 (char 0)'])"),
     "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    (ValueError("bad"), "ValueError: bad"),
])
def test_exception_reprs_read_as_name_and_message(raw, text) -> None:
    assert error_text(raw) == text


def test_the_live_screen_renders_a_snapshot_at_80_columns() -> None:
    from rich.console import Console

    from carsctl.render import live_screen

    stats = LiveStats(clock=Clock())
    _feed(stats, *_run("a", runtime=0.25), {"type": "task-failed", "uuid": "a", "hostname": "ai@h",
                                             "exception": "ValueError('[red]boom[/red]')"})
    console = Console(width=80, record=True, no_color=True)
    console.print(live_screen(stats.snapshot()))
    text = console.export_text()
    assert "process-post" in text and "ai@h" in text and "0.2s" in text
    assert "ValueError:" in text and "[red]boom[/red]" in text  # errors are data, not markup
