"""The custom Redis transport under faults, and how a crash is logged.

- a channel whose kombu Connection is closing raises a connection error (Celery reconnects), not the
  AttributeError that killed a worker after a broker restart;
- an uncaught exception in a worker or beat is one log record with its traceback, not one record per
  piece the interpreter's traceback printer writes to the redirected stderr;
- a restored unacked message goes back to the sub-list of its urgency, at the head (kombu internals
  this project depends on: `_q_for_pri`, `_get_message_priority(reverse=...)`, the restore path).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _connection(url: str):
    from kombu import Connection

    from cars_bot.broker import TRANSPORT_PATH
    from cars_bot.broker_urls import kombu_broker_url

    return Connection(kombu_broker_url(url), transport=TRANSPORT_PATH)


@pytest.mark.redis
def test_a_closing_connection_is_a_connection_error_not_an_attribute_error(redis_url) -> None:
    conn = _connection(redis_url)
    channel = conn.default_channel
    channel.client.ping()
    errors = conn.connection_errors
    # What Celery does after a broker restart: the old connection's transport loses its client while
    # one of its channels still (re)creates a connection pool.
    channel._disconnect_pools()
    conn._do_close_transport()
    with pytest.raises(errors) as caught:
        channel._connparams()
    assert not isinstance(caught.value, AttributeError)
    with pytest.raises(errors):
        channel.pool  # noqa: B018 - the property builds the pool
    with _connection(redis_url) as other:
        closed = other.channel()
        closed.close()  # kombu drops the channel's transport too
        with pytest.raises(errors):
            closed.pool  # noqa: B018


CRASH = textwrap.dedent('''
    import sys
    from cars_bot.celery_app import app

    app.log.setup(loglevel="INFO", logfile=sys.argv[1], redirect_stdouts=True)

    def connparams():
        conninfo = None
        return conninfo.virtual_host + "..........................................................."

    connparams()
''')


def test_an_uncaught_exception_is_one_log_record(tmp_path) -> None:
    log = tmp_path / "crash.log"
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    done = subprocess.run([sys.executable, str(script), str(log)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    text = log.read_text()
    records = re.findall(r"^\[\d{4}-\d\d-\d\d [^\]]*\] ", text, flags=re.MULTILINE)
    assert len(records) == 1, text[:2000]
    assert "AttributeError: 'NoneType' object has no attribute 'virtual_host'" in text
    assert "Traceback (most recent call last)" in text and "in connparams" in text


TASK = "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task"


@pytest.mark.redis
def test_restored_unacked_messages_keep_their_urgency_and_place(celery_app_real, redis_client) -> None:
    """Pins what kombu does with a message given back (the restore path of `_do_restore_message`).

    Ready lists are LPUSHed and served from the right, so the right end is "next". A message whose
    worker died (visibility timeout) or shut down comes back to its urgency's sub-list, served next; one
    rejected with requeue goes to the far end of that sub-list. Fails if kombu changes any of it.
    """
    from cars_bot.broker import message_task_id

    app = celery_app_real
    names = {}
    for name, priority in (("A", 3), ("B", 3), ("C", 8), ("D", 8)):
        names[app.send_task(TASK, priority=priority, queue="monitoring").id] = name

    def lists() -> dict[str, list[str]]:
        keys = sorted(k.decode() for k in redis_client.keys("monitoring*"))
        return {k: [names[message_task_id(raw)] for raw in redis_client.lrange(k, 0, -1)] for k in keys}

    sent = {"monitoring:1": ["D", "C"], "monitoring:6": ["B", "A"]}  # urgency 8 -> level 1, 3 -> level 6
    assert lists() == sent
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        message = channel.basic_get("monitoring", no_ack=False)
        assert names[message.headers["id"]] == "C" and redis_client.hlen("unacked") == 1
        channel.qos.restore_by_tag(message.delivery_tag)  # what restore_visible does after the timeout
        assert lists() == sent and redis_client.hlen("unacked") == 0
        message = channel.basic_get("monitoring", no_ack=False)
        assert names[message.headers["id"]] == "C"
        message.reject(requeue=True)
        assert lists() == {"monitoring:1": ["C", "D"], "monitoring:6": ["B", "A"]}
        message = channel.basic_get("monitoring", no_ack=False)
        assert names[message.headers["id"]] == "D"
        channel.qos.restore_unacked()  # a warm shutdown gives back what it holds
        assert lists() == {"monitoring:1": ["C", "D"], "monitoring:6": ["B", "A"]}
        served = []
        while (message := channel.basic_get("monitoring", no_ack=True)) is not None:
            served.append(names[message.headers["id"]])
    assert served == ["D", "C", "A", "B"]


@pytest.fixture
def silent_redis(monkeypatch: pytest.MonkeyPatch):
    """A "Redis" that accepts connections and never answers (a broker lost behind a NAT or failover),
    and settings pointing at it with the smallest socket timeout."""
    import socket

    from cars_bot.config import get_settings, reset_settings

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{server.getsockname()[1]}/0")
    monkeypatch.setenv("BROKER_SOCKET_TIMEOUT", "2")
    reset_settings()
    try:
        yield get_settings()
    finally:
        server.close()
        reset_settings()


@pytest.mark.slow
@pytest.mark.timeout(60)  # without socket timeouts both calls below wait forever
def test_a_silent_broker_fails_a_publish_and_a_result_read_instead_of_hanging(silent_redis) -> None:
    import redis.exceptions
    from kombu.exceptions import OperationalError

    from cars_bot.celery_app import create_app

    app = create_app(silent_redis)
    try:
        # sending subscribes to the result first: the backend's "retry limit exceeded" RuntimeError
        with pytest.raises((OperationalError, redis.exceptions.TimeoutError, redis.exceptions.ConnectionError,
                            RuntimeError)):
            app.send_task(TASK, queue="monitoring")
        with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError, RuntimeError)):
            app.backend.get_task_meta("1f0c9a3e-5b7d-4c1e-9f2a-0d6b8e4c7a12")
    finally:
        app.close()


def test_a_socket_url_connects_without_the_no_hostname_warning(caplog) -> None:
    """kombu warned "No hostname was supplied. Reverting to default 'localhost'" on every connection
    to the embedded broker's socket URL (each worker connection, every few seconds in the log)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="kombu.connection"):
        conn = _connection("redis+socket:///tmp/cars-bot-test.sock")
        conn.clone()  # what Celery does for every pool and consumer connection
    assert "No hostname was supplied" not in caplog.text
