"""carsctl's plain-socket Redis client: it reads and writes what kombu does (the real-worker tests of the
broadcast are in test_remote.py), and `inspect` and `status` import no Celery, kombu or redis-py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from carsctl.cluster.redis_pidbox import Target, connect_target


def test_urls_it_speaks_and_the_ones_left_to_kombu() -> None:
    assert connect_target("redis://:s3cret@broker.example:6380/3") == Target(
        host="broker.example", port=6380, path=None, db=3, username=None, password="s3cret")
    assert connect_target("redis://ops:pw@10.0.0.1") == Target(host="10.0.0.1", port=6379, path=None, db=0,
                                                              username="ops", password="pw")
    assert connect_target("socket:///tmp/cars/redis.sock") == Target(host=None, port=0, path="/tmp/cars/redis.sock",
                                                                     db=0, username=None, password=None)
    assert connect_target("rediss://broker.example:6380/0") is None            # TLS: kombu
    assert connect_target("redis://h:6379/0?ssl_cert_reqs=required") is None  # connection options: kombu
    assert connect_target("amqp://guest@localhost//") is None


@pytest.mark.redis
def test_the_control_message_is_celerys_and_the_reply_queue_is_removed(celery_app_real, redis_client) -> None:
    from carsctl.cluster.redis_pidbox import broadcast
    from carsctl.cluster.remote_control import wire_target

    wire = wire_target(celery_app_real, None)
    assert wire is not None
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"/{wire.target.db}.celery.pidbox")  # where kombu's fanout publishes, and workers listen
    pubsub.get_message(timeout=2)  # the subscribe confirmation
    got = broadcast(wire.target, "active", {"safe": True}, destination=["a@host"], reply=True, timeout=0.2,
                    connect_timeout=2, limit_for=lambda count: 1)
    assert got.listeners == 1 and got.replies == {} and not got.all_replied
    envelope = json.loads(pubsub.get_message(timeout=2)["data"])
    pubsub.close()
    body = json.loads(base64.b64decode(envelope["body"]))
    assert body["method"] == "active" and body["arguments"] == {"safe": True} and body["destination"] == ["a@host"]
    oid = body["reply_to"]["routing_key"]
    assert body["reply_to"]["exchange"] == "reply.celery.pidbox" and body["ticket"]
    assert envelope["properties"]["delivery_info"] == {"exchange": "celery.pidbox", "routing_key": ""}
    assert envelope["content-type"] == "application/json" and envelope["headers"]["expires"] > 0
    # kombu itself decodes it as the workers do
    from kombu.transport.virtual import Message

    decoded = Message(envelope, channel=celery_app_real.connection_for_write().default_channel).decode()
    assert decoded["method"] == "active"
    # the reply queue's binding is gone afterwards (kombu removes an auto-delete queue's the same way)
    assert not [member for member in redis_client.smembers("_kombu.binding.reply.celery.pidbox")
                if oid in (member.decode() if isinstance(member, bytes) else member)]


@pytest.mark.redis
def test_status_reads_over_the_socket_what_kombu_reads(celery_app_real, redis_client, settings) -> None:
    from cars_bot.beat import HEARTBEAT_KEY
    from carsctl.cluster.remote_control import wire_target
    from carsctl.health.overview import _check_broker, _queues, _read_heartbeat

    app = celery_app_real
    for priority in (0, 5, 9, 9, 3):
        app.send_task("cars_bot.tasks.ai_tasks.process_post_task", args=[1], queue="ai_processing",
                      priority=priority)
    app.send_task("cars_bot.tasks.monitoring_tasks.collect_stats_task", queue="monitoring")
    redis_client.hset("unacked", "tag-1", json.dumps([{"body": ""}, "ai_processing", "ai_processing"]))
    redis_client.set(HEARTBEAT_KEY, json.dumps({"pid": 4242, "hostname": "beat-host", "max_interval": 10,
                                                "tick_at": "2026-01-01T00:00:00+00:00", "entries": {}}))
    wire = wire_target(None, settings)
    assert wire is not None
    over_socket = _queues(None, wire)
    assert over_socket == _queues(app)
    by_name = {row.queue: row for row in over_socket}
    assert by_name["ai_processing"].ready == 5 and by_name["ai_processing"].unacked == 1
    assert _read_heartbeat(None, wire) == _read_heartbeat(app)
    assert _read_heartbeat(None, wire) is not None
    broker = _check_broker(settings, wire)
    assert broker.reachable and broker.version and broker.kind == "redis"


@pytest.mark.redis
@pytest.mark.parametrize("command", [["inspect", "ping", "--json"], ["status", "--json"]])
def test_inspect_and_status_import_no_celery_kombu_or_redis(command, redis_url, tmp_path) -> None:
    code = ("import sys; from carsctl.app import main; sys.argv=['carsctl', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in ('celery', 'kombu', 'redis') if m in sys.modules))")
    env = {**os.environ, "REDIS_URL": redis_url, "CARSCTL_HOME": str(tmp_path / "home"),
           "LOG_DIR": str(tmp_path / "logs")}
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=60,
                         env=env).stdout
    assert out.rstrip().endswith("HEAVY="), out


def test_a_broker_that_does_not_answer_is_not_waited_for_twice(settings, monkeypatch) -> None:
    from carsctl.cluster import redis_pidbox
    from carsctl.cluster.remote_control import Wire
    from carsctl.errors import DependencyUnavailable
    from carsctl.health import connectivity
    from carsctl.health.overview import _check_broker

    def silent(*_args):
        raise TimeoutError("timed out")

    def check_broker(_settings):
        raise AssertionError("asked again")

    monkeypatch.setattr(redis_pidbox, "open_client", silent)
    monkeypatch.setattr(connectivity, "check_broker", check_broker)
    wire = Wire(target=connect_target("redis://10.0.0.1:6379/0"), url="redis://10.0.0.1:6379/0", connect_timeout=3)
    with pytest.raises(DependencyUnavailable, match=r"broker unreachable at .*: timed out"):
        _check_broker(settings, wire)
