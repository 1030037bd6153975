"""The embedded broker: a private Redis on a unix socket, started and stopped by carsctl."""

import json
import os

import pytest

from tests.carsctl.cli import invoke, run_carsctl


@pytest.fixture
def embedded_home(monkeypatch, short_home):
    """CARSCTL_HOME for the embedded Redis (a short path: its unix socket lives there); Redis is
    stopped at the end (before the directory is removed)."""
    home = short_home
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARSCTL_HOME", str(home))
    monkeypatch.setenv("LOG_DIR", str(home / "logs"))
    yield home
    invoke("broker", "stop")


def test_start_is_idempotent_and_persistent(embedded_home) -> None:
    first = invoke("broker", "start", "--json")
    assert first.exit_code == 0, first.output
    started = json.loads(first.stdout)
    assert started["started"] is True and started["running"] is True
    assert started["socket"] == str(embedded_home / "redis.sock")
    assert started["persistence"] == "appendonly"
    second = json.loads(invoke("broker", "start", "--json").stdout)
    assert second["started"] is False and second["pid"] == started["pid"]

    import redis

    client = redis.Redis(unix_socket_path=str(embedded_home / "redis.sock"))
    client.rpush("ai_processing", "queued task")
    stop = invoke("broker", "stop", "--json")
    assert json.loads(stop.stdout)["stopped"] is True
    assert not (embedded_home / "redis.sock").exists()
    status = invoke("broker", "status")
    assert status.exit_code == 69 and "carsctl broker start" in status.output
    invoke("broker", "start")
    client = redis.Redis(unix_socket_path=str(embedded_home / "redis.sock"))
    assert client.lrange("ai_processing", 0, -1) == [b"queued task"]  # nothing lost across a restart


def test_stale_socket_and_pidfile_are_cleaned_up(embedded_home) -> None:
    embedded_home.mkdir(exist_ok=True)
    (embedded_home / "redis.sock").write_text("")  # left by a crash
    (embedded_home / "redis.pid").write_text(str(os.getpid()))  # a live pid that is not Redis
    status = json.loads(invoke("broker", "status", "--json").stdout)
    assert status["running"] is False and len(status["stale"]) == 2
    result = json.loads(invoke("broker", "start", "--json").stdout)
    assert result["started"] is True and len(result["removed_stale"]) == 2
    assert result["pid"] != os.getpid()


def test_start_refuses_when_redis_url_is_set(embedded_home, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    result = invoke("broker", "start")
    assert result.exit_code == 2 and "REDIS_URL" in result.output


def test_status_of_a_configured_redis(redis_url, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    data = json.loads(invoke("broker", "status", "--json").stdout)
    assert data["mode"] == "external" and data["reachable"] and data["version"]


@pytest.mark.timeout(60)  # a hang guard only; how fast it answers is measured by bench/bench_lifecycle.py
def test_unreachable_broker_is_one_line_exit_69(tmp_path) -> None:
    result = run_carsctl("broker", "status", env={"REDIS_URL": "redis://:s3cretpass@127.0.0.1:1/0",
                                                  "CARSCTL_HOME": str(tmp_path)})
    assert result.returncode == 69
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "broker unreachable at redis://:****@127.0.0.1:1/0" in result.stderr
    assert "s3cretpass" not in result.stderr


@pytest.mark.redis
def test_status_reads_as_words_not_python_values(redis_url, settings) -> None:
    result = invoke("broker", "status")
    cells = [line.split("│") for line in result.stdout.splitlines() if "│" in line]
    rows = {key.strip(): value.strip() for key, value in cells}
    assert result.exit_code == 0 and rows["state"] == "running" and rows["reachable"] == "yes"
    assert "True" not in result.stdout and "False" not in result.stdout
    assert json.loads(invoke("broker", "status", "--json").stdout)["running"] is True  # JSON keeps its types


def test_uptime_reads_the_same_in_worker_status_as_in_status() -> None:
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from carsctl.context import CliContext
    from carsctl.lifecycle.node_results import NodeStatus, NodeStatusRow
    from carsctl.process.nodes import NodeState
    from carsctl.reports import report_status

    started = (datetime.now(UTC) - timedelta(seconds=146.2)).isoformat()
    row = NodeStatusRow.of(NodeState(name="ai", hostname="ai@h", pid=1, started_at=started), NodeStatus.RUNNING)
    cli = CliContext(_out=Console(record=True, width=120, no_color=True))
    report_status(cli, [row], json=False)
    assert "2m26s" in cli.out.export_text()  # render.duration, as `status` shows it (not "146s")
