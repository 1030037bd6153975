"""Remote control against two real workers: replies return early, silent and stopped nodes are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.carsctl.cli import invoke
from tests.carsctl.ops import save_worker_state
from tests.workers import celery_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_workers(redis_url, tmp_path_factory):
    """Two solo workers on the `monitoring` queue for the whole module: [(process, node), ...]."""
    from cars_bot.celery_app import app
    from carsctl.health.connectivity import redis_client

    client = redis_client(redis_url, timeout=5)
    client.flushdb()
    client.close()
    logs = tmp_path_factory.mktemp("workers")
    with celery_worker(app, queues="monitoring", log=logs / "a.log") as first, \
            celery_worker(app, queues="monitoring", log=logs / "b.log") as second:
        yield app, [first, second]


def test_broadcast_returns_as_soon_as_every_worker_replied(two_workers, settings) -> None:
    from carsctl.cluster.remote_control import StopReason, inspect

    app, workers = two_workers
    for process, node in workers:
        save_worker_state(settings, process, node)
    outcome = inspect(app, "ping", timeout=3.0, settings=settings)
    assert sorted(outcome.replies) == sorted(node for _, node in workers)
    assert outcome.listeners == 2 and outcome.silent == [] and outcome.silent_unnamed == 0
    assert outcome.stopped_because == StopReason.ALL_REPLIED  # returned on the last reply, not at the 3 s timeout


def test_kombus_broadcast_and_the_plain_socket_one_get_the_same_replies(two_workers, settings, monkeypatch) -> None:
    """Brokers the plain-socket pidbox does not speak (TLS, AMQP) go through kombu: same outcome."""
    from carsctl.cluster import remote_control
    from carsctl.cluster.remote_control import StopReason, inspect

    app, workers = two_workers
    over_socket = inspect(app, "ping", timeout=3.0, settings=settings)
    monkeypatch.setattr(remote_control, "wire_target", lambda *_: None)
    through_kombu = inspect(app, "ping", timeout=3.0, settings=settings)
    assert over_socket.replies == through_kombu.replies == {node: {"ok": "pong"} for _, node in workers}
    assert over_socket.listeners == through_kombu.listeners == 2
    assert over_socket.stopped_because == through_kombu.stopped_because == StopReason.ALL_REPLIED

def test_workers_carsctl_did_not_start_are_expected_too(two_workers, settings) -> None:
    from carsctl.cluster.remote_control import StopReason, WorkerStats, inspect, node_rows

    app, workers = two_workers
    outcome = inspect(app, "stats", timeout=3.0, settings=settings)  # no node state at all
    # the subscriber count of the broadcast says how many replies to wait for
    assert outcome.listeners == 2 and len(outcome.replies) == 2 and outcome.stopped_because == StopReason.ALL_REPLIED
    rows = node_rows(outcome)
    assert all(isinstance(row, WorkerStats) for row in rows)
    assert {row.worker: row.concurrency for row in rows} == {node: 1 for _, node in workers}


def test_a_stopped_node_costs_the_timeout_and_is_reported_silent(two_workers, settings) -> None:
    from carsctl.cluster.remote_control import StopReason, inspect

    app, workers = two_workers
    (live, live_node), (stopped, stopped_node) = workers
    save_worker_state(settings, live, live_node)
    save_worker_state(settings, stopped, stopped_node)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        outcome = inspect(app, "ping", timeout=1.0, settings=settings)
        result = invoke("inspect", "ping", "--timeout", "0.5")
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert list(outcome.replies) == [live_node]
    assert outcome.silent == [stopped_node] and outcome.listeners == 2
    assert outcome.stopped_because == StopReason.TIMED_OUT  # waited for the stopped one until the timeout
    assert result.exit_code == 0
    assert live_node in result.stdout and f"{stopped_node} did not reply within 0.5s" in result.stderr


def test_a_node_whose_process_is_gone_is_reported_without_waiting(two_workers, settings) -> None:
    from carsctl.cluster.remote_control import StopReason, inspect
    from carsctl.process.nodes import NodeState, save_node

    app, _workers = two_workers
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ghost = f"ghost@{os.uname().nodename}"
    save_node(settings, NodeState(name="ghost", hostname=ghost, pid=gone.pid))
    outcome = inspect(app, "ping", timeout=3.0, settings=settings)
    assert outcome.not_running == [ghost] and len(outcome.replies) == 2
    # the gone node was not waited for: the two live listeners replied and the broadcast returned
    assert ghost not in outcome.expected and outcome.silent == []
    assert outcome.listeners == 2 and outcome.stopped_because == StopReason.ALL_REPLIED
    result = invoke("inspect", "ping")
    assert result.exit_code == 0 and "ghost@" in result.stderr and "not running" in result.stderr


def test_destination_limits_the_broadcast_and_a_missing_node_exits_69(two_workers, settings) -> None:
    _app, workers = two_workers
    node = workers[0][1]
    result = invoke("inspect", "stats", "-d", node, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [row["worker"] for row in data["rows"]] == [node] and data["replied"] == [node]
    assert data["stopped_because"] == "all replied"  # the one destination answered: no waiting for the other
    missing = invoke("inspect", "ping", "-d", "nobody@nowhere", "--timeout", "0.3")
    assert missing.exit_code == 69 and "nobody@nowhere did not reply" in missing.stderr


def test_scheduled_tasks_render_arguments_as_data(two_workers, settings) -> None:
    app, workers = two_workers
    text = "[bold]Продаю[/bold] BMW"
    task_id = app.send_task("cars_bot.tasks.ai_tasks.classify_post_task", args=[text], queue="monitoring",
                            countdown=300).id
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            result = invoke("inspect", "scheduled", "--json")
            rows = json.loads(result.stdout)["rows"] if result.exit_code == 0 else []
            if any(row["id"] == task_id for row in rows):
                break
            time.sleep(0.1)
        row = next(row for row in rows if row["id"] == task_id)
        assert row["alias"] == "classify-post" and row["args"] == [text] and row["eta"]
        table = invoke("inspect", "scheduled")
        assert table.exit_code == 0 and task_id in table.stdout
        assert "[bold]Продаю" in table.stdout  # shown, not interpreted as markup
    finally:
        revoked = invoke("task", "revoke", task_id, "--json")
    assert sorted(json.loads(revoked.stdout)["acknowledged_by"]) == sorted(n for _, n in workers)
    assert json.loads(revoked.stdout)["outcome"] in ("delivered", "held_by_worker")  # a worker holds it (ETA)


def test_status_with_two_nodes_is_one_screen_of_early_returning_broadcasts(two_workers, settings, migrated_database,
                                                                           monkeypatch) -> None:
    from carsctl.cluster import remote_control
    from carsctl.health.overview import WorkerState, gather

    app, workers = two_workers
    save_worker_state(settings, *workers[0])
    outcomes = []

    def recorded(*args, **kwargs):
        outcomes.append(real_broadcast(*args, **kwargs))
        return outcomes[-1]

    real_broadcast = remote_control.broadcast
    monkeypatch.setattr(remote_control, "broadcast", recorded)
    report = gather(app, settings)
    # stats, then active and reserved of the nodes that answered: each returned on its last reply (the
    # queues they consume are asked only when messages wait)
    assert [(o.command, o.stopped_because) for o in outcomes] == [
        (command, remote_control.StopReason.ALL_REPLIED) for command in ("stats", "active", "reserved")]
    nodes = {row.node: row for row in report.nodes}
    assert {n for _, n in workers} <= set(nodes)
    first = nodes[workers[0][1]]
    assert first.state == WorkerState.ONLINE and first.started_by_carsctl and first.pid == workers[0][0].pid
    assert first.concurrency == 1 and first.active == 0 and first.processed is not None
    assert first.queues == ["monitoring"]  # from carsctl's node state
    assert not nodes[workers[1][1]].started_by_carsctl and report.exit_code == 0 and report.problems == []
    monkeypatch.undo()
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert workers[0][1] in result.stdout and "online" in result.stdout and "not configured" in result.stdout


def test_doctor_compares_worker_clocks(two_workers) -> None:
    from carsctl.health.checkup import clock_skew

    app, _workers = two_workers
    from carsctl.health.checkup import Level

    [finding] = clock_skew(app, expected=2, timeout=2.0)
    assert finding.level == Level.OK and finding.message.startswith("2 worker clock(s)"), finding


def test_purge_with_unacked_revokes_what_live_workers_prefetched(two_workers, settings, redis_client) -> None:
    from tests.carsctl.ops import unacked

    app, workers = two_workers
    task_id = app.send_task("cars_bot.tasks.monitoring_tasks.cleanup_old_results_task", queue="monitoring",
                            countdown=300).id
    deadline = time.monotonic() + 10
    while not unacked(redis_client) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = invoke("purge", "-Q", "monitoring", "--yes", "--include-unacked", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unacked_removed"] == {"monitoring": 1} and report["revoked_task_ids"] == 1
    assert sorted(report["revoked_by"]) == sorted(node for _, node in workers)
    revoked = json.loads(invoke("inspect", "revoked", "--json").stdout)
    assert all(task_id in row["items"] for row in revoked["rows"])


def test_status_names_a_queue_the_running_workers_do_not_consume(two_workers, settings, migrated_database,
                                                                  redis_client) -> None:
    from cars_bot.task_names import PROCESS_POST
    from carsctl.health.overview import gather

    app, workers = two_workers
    app.send_task(PROCESS_POST, args=[7], queue="ai_processing")
    try:
        report = gather(app, settings)
    finally:
        redis_client.delete("ai_processing", *(f"ai_processing:{level}" for level in range(1, 10)))
    assert report.queue_consumers == {"monitoring": sorted(node for _, node in workers)}
    assert [(q.queue, q.ready) for q in report.unconsumed] == [("ai_processing", 1)]
    assert report.unconsumed[0].fix == ("carsctl worker start ai -Q ai_processing, or "
                                        "carsctl control add-consumer ai_processing")
    assert report.exit_code == 1
