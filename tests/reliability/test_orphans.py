"""Orphaned unacked messages are given back at once, and only those: a message a live worker holds is
never restored, and nothing is restored while a worker stays silent."""

from __future__ import annotations

import os
import signal

import pytest

from tests.carsctl.ops import TASKS_MODULE
from tests.reliability.conftest import Stack, wait_for
from tests.workers import celery_worker

pytestmark = [pytest.mark.slow]


def test_a_message_held_by_a_live_worker_is_never_restored(stack: Stack, tmp_path) -> None:
    from cars_bot.broker import restore_orphans

    app, client = stack.app, stack.app.connection_for_read().default_channel.client
    with celery_worker(app, pool="prefork", concurrency=1, queues="default",
                       extra=("-I", TASKS_MODULE)) as (process, _node):
        marker = str(tmp_path / "long")
        sent = app.send_task("carsctl_test.sleep", args=[30, marker], queue="default")
        wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
        assert client.hlen("unacked") == 1

        held = restore_orphans(app, timeout=2.0)
        assert held.answered and held.workers == 1 and held.held == 1 and held.restored == ()

        os.kill(process.pid, signal.SIGSTOP)  # a live worker that cannot answer
        try:
            silent = restore_orphans(app, timeout=1.0)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert not silent.answered and silent.restored == ()
        assert client.hlen("unacked") == 1
        app.control.revoke(sent.id, terminate=True, signal="SIGKILL")  # no need to wait for it


def test_the_safety_net_gives_back_a_dead_workers_messages(stack: Stack, tmp_path, capsys) -> None:
    """A worker killed with no carsctl restart: the periodic task, run by the surviving worker, gives
    its message back (the 2-minute beat interval is the only wait left, and it is not waited here)."""
    import time

    from cars_bot.tasks.monitoring_tasks import recover_lost_work_task

    app = stack.app
    marker = str(tmp_path / "orphan")
    with celery_worker(app, pool="prefork", concurrency=1, queues="default",
                       extra=("-I", TASKS_MODULE)) as (doomed, _node):
        app.send_task("carsctl_test.sleep", args=[1, marker], queue="default")
        wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
        stack.kill9(doomed.pid)  # the whole node: main process, then its pool child
        died = time.monotonic()
        for child in stack.killed:
            os.kill(child, signal.SIGKILL)
        os.remove(marker + ".started")
    with celery_worker(app, pool="prefork", concurrency=2, queues="default,monitoring",
                       extra=("-I", TASKS_MODULE)):
        outcome = recover_lost_work_task.apply_async().get(timeout=30)
        assert outcome["workers_answered"] and len(outcome["orphans_restored"]) == 1, outcome
        wait_for(lambda: os.path.exists(marker + ".done"), 30, "the orphaned task to run again")
        elapsed = time.monotonic() - died
    with capsys.disabled():
        print(f"\nsafety net: a dead worker's message ran again {elapsed:.1f}s after its death "
              "(plus up to the 2-minute beat interval)")


@pytest.mark.parametrize("command", [("up", "--no-beat"), ("worker", "restart", "w")], ids=["up", "restart"])
def test_up_and_restart_after_a_crash_give_back_what_the_dead_node_held(stack: Stack, tmp_path, command) -> None:
    marker = str(tmp_path / "held")
    stack.start_worker("w", "-Q", "default", "-c", "1", "-I", TASKS_MODULE)
    stack.app.send_task("carsctl_test.sleep", args=[2, marker], queue="default")
    wait_for(lambda: os.path.exists(marker + ".started"), 30, "the task to start")
    stack.kill9(stack.worker_pid("w"))  # the node dies with its pool child
    for child in stack.killed:
        os.kill(child, signal.SIGKILL)
    os.remove(marker + ".started")

    result = stack.carsctl(*command)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "restored 1 unacked message(s) orphaned by a dead worker" in result.stderr, result.stderr
    wait_for(lambda: os.path.exists(marker + ".done"), 30, "the task to run again")
