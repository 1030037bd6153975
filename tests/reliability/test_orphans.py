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
