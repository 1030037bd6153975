"""`carsctl up` / `carsctl down`: the whole stack, in order, idempotent."""

from __future__ import annotations

import json
import socket

import pytest

from tests.carsctl.ops import pid_alive

pytestmark = [pytest.mark.redis, pytest.mark.slow]
HOST = socket.gethostname()


def _ping(app, *hostnames: str) -> set[str]:
    with app.connection_for_write() as connection:
        replies = app.control.ping(destination=list(hostnames), timeout=2, connection=connection) or []
    return {name for reply in replies for name in reply}


def test_up_and_down_with_a_dedicated_ai_node(lifecycle, redis_client) -> None:
    from cars_bot.beat import LOCK_KEY, read_heartbeat
    from cars_bot.celery_app import app

    up = lifecycle.run("up", "--node", "main:default,publishing,sheets_sync,monitoring", "--node",
                       "ai:ai_processing:1", "--pool", "solo", "--json")
    assert up.returncode == 0, up.stderr
    steps = json.loads(up.stdout)
    assert steps["ok"] and steps["broker"] is None  # REDIS_URL is set: carsctl runs no Redis
    assert steps["database"]["to"] == steps["database"]["head"]
    assert [w["state"] for w in steps["workers"]] == ["started", "started"]
    assert steps["beat"]["state"] == "started"
    assert steps["monitor"] is None and up.stderr.count("monitor: skipped (not configured: set TELEGRAM_API_ID") == 1
    assert _ping(app, f"main@{HOST}", f"ai@{HOST}") == {f"main@{HOST}", f"ai@{HOST}"}
    assert read_heartbeat(redis_client).pid == steps["beat"]["pid"]
    assert lifecycle.state("ai")["queues"] == ["ai_processing"] and lifecycle.state("ai")["concurrency"] == 1
    assert (lifecycle.logs / "celery_worker-ai.log").exists() and (lifecycle.logs / "celery_beat.log").exists()

    again = lifecycle.run("up")  # idempotent: the same nodes, already running
    assert again.returncode == 0 and again.stderr.count("already running") == 3, again.stderr

    pids = [w["pid"] for w in steps["workers"]] + [steps["beat"]["pid"]]
    down = lifecycle.run("down")
    assert down.returncode == 0, down.stderr
    lines = down.stderr.splitlines()
    beat_line = next(i for i, line in enumerate(lines) if line.startswith(f"beat@{HOST} stopped"))
    worker_line = next(i for i, line in enumerate(lines) if line.startswith(f"main@{HOST} stopped"))
    assert beat_line < worker_line  # beat first: no new periodic tasks while the workers drain
    assert not any(pid_alive(pid) for pid in pids)
    assert redis_client.get(LOCK_KEY) is None
    assert not list((lifecycle.home / "nodes").glob("*.json"))
    assert lifecycle.run("worker", "status").returncode == 3

    back = lifecycle.run("up", "--no-beat", "--json")  # remembers the layout of the last run
    assert back.returncode == 0, back.stderr
    assert sorted(w["name"] for w in json.loads(back.stdout)["workers"]) == ["ai", "main"]
    assert lifecycle.run("down").returncode == 0


def test_up_starts_the_embedded_broker_when_no_redis_url_is_set(lifecycle, short_home) -> None:
    home = short_home  # the embedded Redis's socket lives here
    env = {"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs")}
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        lifecycle.env.pop(name, None)
    lifecycle.env.update(env)
    try:
        up = lifecycle.run("up", "--pool", "solo", "-c", "1", "--no-beat", "--json")
        assert up.returncode == 0, up.stderr
        steps = json.loads(up.stdout)
        assert steps["broker"]["running"] and steps["workers"][0]["name"] == "worker"
        assert steps["workers"][0]["logfile"] == str(home / "logs" / "celery_worker.log")
        assert up.stderr.index("broker: embedded Redis") < up.stderr.index(f"worker@{HOST} started")
        status = lifecycle.run("worker", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)[0]["status"] == "running"
        down = lifecycle.run("down")
        assert down.returncode == 0, down.stderr
        assert "embedded Redis stopped" in down.stderr and not (home / "redis.sock").exists()
        assert not pid_alive(steps["workers"][0]["pid"])
    finally:
        lifecycle.run("down", "--timeout", "5", "--force")
        lifecycle.run("broker", "stop")


def test_down_stops_this_state_directorys_redis_even_with_another_redis_url(lifecycle, short_home) -> None:
    """Issue 15 item 10: `REDIS_URL=redis://other carsctl down` stopped the nodes and stranded their Redis."""
    home = short_home
    lifecycle.env.update({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs")})
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        lifecycle.env.pop(name, None)
    try:
        up = lifecycle.run("up", "--pool", "solo", "-c", "1", "--no-beat", "--json")
        assert up.returncode == 0, up.stderr
        worker_pid, redis_pid = json.loads(up.stdout)["workers"][0]["pid"], json.loads(up.stdout)["broker"]["pid"]
        down = lifecycle.run("down", "--json", env={"REDIS_URL": "redis://:other-pw@127.0.0.1:1/0"})
        assert down.returncode == 0, down.stderr
        steps = json.loads(down.stdout)
        assert steps["broker"]["stopped"] and steps["state_dir"] == str(home)
        assert f"{home} runs its own embedded Redis" in down.stderr and "redis://:****@127.0.0.1:1/0" in down.stderr
        assert "other-pw" not in down.stderr + down.stdout
        assert not pid_alive(worker_pid) and not pid_alive(redis_pid) and not (home / "redis.sock").exists()
    finally:
        lifecycle.run("down", "--timeout", "5", "--force")
        lifecycle.run("broker", "stop")
