"""Finding, revoking and removing queued messages matches one exact task id, never a substring."""

from __future__ import annotations

import uuid

import pytest

from tests.carsctl.cli import invoke
from tests.carsctl.ops import queued

pytestmark = pytest.mark.redis

TASK = "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task"


def _send(app, task_id: str, **kwargs) -> str:
    return app.send_task(TASK, task_id=task_id, kwargs=kwargs, queue="monitoring").id


def _ids(redis_client) -> list[str]:
    return sorted(m["headers"]["id"] for messages in queued(redis_client, "monitoring").values() for m in messages)


def test_an_id_inside_another_message_is_not_that_message(celery_app_real, redis_client) -> None:
    from cars_bot.broker import find_queued, is_unacked, remove_queued

    app = celery_app_real
    target = str(uuid.uuid4())
    # Sent first, so a substring match finds it first: its own id starts with the target's text, and
    # its arguments mention the target id.
    decoy = _send(app, target + "-retry", note=target)
    _send(app, target)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert remove_queued(channel, ["monitoring"], target[:8]) is None
        assert remove_queued(channel, ["monitoring"], "a") is None
        assert find_queued(channel, ["monitoring"], target[:8]) is None
        assert not is_unacked(channel, target)
        assert _ids(redis_client) == sorted([decoy, target])
        assert remove_queued(channel, ["monitoring"], target) == "monitoring"
        assert _ids(redis_client) == [decoy]
        assert find_queued(channel, ["monitoring"], target) is None
        assert find_queued(channel, ["monitoring"], decoy) == "monitoring"


def test_revoke_refuses_what_cannot_be_a_task_id(celery_app_real, redis_client, settings) -> None:
    task_id = _send(celery_app_real, str(uuid.uuid4()))
    for text in ("a", task_id[:8], task_id + "x", ""):
        revoked = invoke("task", "revoke", text)
        assert revoked.exit_code == 2 and "not a task id" in revoked.stderr, revoked.output
        assert len(revoked.stderr.strip().splitlines()) <= 2  # the error and its hint, no traceback
    assert _ids(redis_client) == [task_id]
    other = str(uuid.uuid4())
    revoked = invoke("task", "revoke", other)
    assert revoked.exit_code == 0 and "removed from queue" not in revoked.stderr
    assert _ids(redis_client) == [task_id]


def test_task_id_argument() -> None:
    from carsctl.dispatch.arguments import task_id_argument
    from carsctl.errors import UsageError

    task_id = str(uuid.uuid4())
    assert task_id_argument(task_id) == task_id == task_id_argument(task_id.upper())  # Celery's lowercase form
    for text in ("", "a", "1f0c...e2", task_id[:-1], task_id + "0"):
        with pytest.raises(UsageError):
            task_id_argument(text)
