"""`carsctl monitor` as processes: refusing honestly without credentials; with the Telegram client
faked at the network boundary (MONITOR_CLIENT_FACTORY, tests only), start returns once it listens,
status reads its heartbeat, stop ends it with SIGTERM and it saves its state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.carsctl.ops import pid_alive
from tests.telegram_sessions import fake_session_string

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NOT_CONFIGURED = "not configured: set TELEGRAM_API_ID, TELEGRAM_API_HASH and TELEGRAM_MONITOR_SESSION_STRING"
FAKE_TELEGRAM = {"TELEGRAM_API_ID": "12345", "TELEGRAM_API_HASH": "0123456789abcdef",
                 "TELEGRAM_MONITOR_SESSION_STRING": fake_session_string("FakeMonitor"),
                 "MONITOR_CLIENT_FACTORY": "tests.cars_bot.monitor.fake_monitor_client:make_client"}


def test_without_credentials_status_says_so_and_start_refuses(lifecycle: Any) -> None:
    status = lifecycle.run("monitor", "status")
    assert status.returncode == 3 and NOT_CONFIGURED in status.stderr
    start = lifecycle.run("monitor", "start")
    assert start.returncode == 2 and NOT_CONFIGURED in start.stderr
    assert "Traceback" not in start.stderr and lifecycle.state("monitor") is None
    assert json.loads(lifecycle.run("monitor", "status", "--json").stdout)["configured"] is False


def test_start_status_stop_with_a_faked_telegram(lifecycle: Any, db: Any) -> None:
    from cars_bot.db.models import Channel

    with db.begin() as session:
        session.add_all([Channel(username="cars_msk", is_active=True), Channel(username="old", is_active=False)])
    lifecycle.env.update(FAKE_TELEGRAM)

    start = lifecycle.run("monitor", "start", "--json")
    assert start.returncode == 0, start.stderr
    (started,) = json.loads(start.stdout)
    assert started["state"] == "started" and pid_alive(started["pid"])
    assert "already running" in lifecycle.run("monitor", "start").stderr

    status = lifecycle.run("monitor", "status", "--json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)
    assert row["status"] == "running" and row["listen_state"] == "listening"
    assert row["channels"] == ["cars_msk"] and row["last_catch_up_at"]
    assert "cars_msk" in lifecycle.run("monitor", "status").stdout
    overview = json.loads(lifecycle.run("status", "--json").stdout)
    assert overview["monitor"]["state"] == "running" and overview["monitor"]["pid"] == started["pid"]

    restart = lifecycle.run("monitor", "restart", "--json")
    assert restart.returncode == 0, restart.stderr
    (restarted,) = json.loads(restart.stdout)
    assert restarted["state"] == "started" and restarted["pid"] != started["pid"] and not pid_alive(started["pid"])
    started = restarted

    stop = lifecycle.run("monitor", "stop")
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(started["pid"])
    assert not (lifecycle.home / "run" / "monitor.pid").exists()
    heartbeat = json.loads((lifecycle.home / "run" / "monitor.heartbeat.json").read_text())
    assert heartbeat["state"] == "stopped"  # it shut down cleanly on SIGTERM
    log = (lifecycle.logs / "monitor.log").read_text()
    assert "listening to cars_msk" in log and "stopped" in log
    assert FAKE_TELEGRAM["TELEGRAM_MONITOR_SESSION_STRING"] not in log
    after = lifecycle.run("monitor", "status")
    assert after.returncode == 3 and "stopped" in after.stdout


def test_up_starts_the_monitor_last_and_down_stops_it_first(lifecycle: Any) -> None:
    lifecycle.env.update(FAKE_TELEGRAM)
    up = lifecycle.run("up", "--pool", "solo", "-c", "1", "--no-beat", "--json")
    assert up.returncode == 0, up.stderr
    steps = json.loads(up.stdout)
    assert steps["monitor"]["state"] == "started" and "skipped" not in up.stderr
    assert up.stderr.index("worker@") < up.stderr.index("monitor@")
    down = lifecycle.run("down")
    assert down.returncode == 0, down.stderr
    lines = down.stderr.splitlines()
    monitor_line = next(i for i, line in enumerate(lines) if line.startswith("monitor@") and "stopped" in line)
    worker_line = next(i for i, line in enumerate(lines) if line.startswith("worker@") and "stopped" in line)
    assert monitor_line < worker_line  # no new posts while the workers drain
    assert not pid_alive(steps["monitor"]["pid"])


def test_systemd_emits_the_monitor_unit_only_when_it_is_configured(lifecycle: Any, monkeypatch: Any) -> None:
    import re

    bare = lifecycle.invoke("systemd")
    assert "cars-bot-monitor.service" not in bare.stdout
    assert f"# No unit for the Telegram monitor service: {NOT_CONFIGURED}." in bare.stdout
    for name, value in FAKE_TELEGRAM.items():
        monkeypatch.setenv(name, value)
    text = lifecycle.invoke("systemd").stdout
    unit = text.split("# ===== cars-bot-monitor.service =====", 1)[1].split("# =====", 1)[0]
    assert re.search(r"^ExecStart=\S+ -m cars_bot\.monitor --loglevel info$", unit, re.M), unit
    assert "KillSignal=SIGTERM" in unit and "RestartPreventExitStatus=2" in unit
    assert "Wants=cars-bot-monitor.service" in text and FAKE_TELEGRAM["TELEGRAM_MONITOR_SESSION_STRING"] not in text
    assert "No unit for the Telegram monitor" not in text


@pytest.mark.parametrize(("listen_state", "age", "code", "status"), [
    ("listening", 0, 0, "running"),
    ("listening", 600, 4, "not-responding"),  # alive, but the heartbeat is older than 3 intervals
    ("connecting", 0, 4, "not-responding"),
    ("reconnecting", 0, 69, "not-responding"),  # Telegram unreachable
])
def test_status_exit_codes_from_the_process_and_its_heartbeat(lifecycle: Any, monkeypatch: Any, listen_state: str,
                                                              age: int, code: int, status: str) -> None:
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    import psutil

    from cars_bot.monitor.heartbeat import ListenState, MonitorHeartbeat, write_heartbeat
    from carsctl.process.nodes import NodeState, save_node

    for name, value in FAKE_TELEGRAM.items():
        monkeypatch.setenv(name, value)
    pidfile = lifecycle.home / "run" / "monitor.pid"
    # a stand-in whose command line carries the markers of a monitor process (module name, pidfile)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "cars_bot.monitor",
                                str(pidfile)])
    lifecycle.extra_pids.append(process.pid)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{process.pid}\n")
    save_node(lifecycle.settings(), NodeState(
        name="monitor", hostname="monitor@test", kind="monitor", pid=process.pid,
        create_time=psutil.Process(process.pid).create_time(), pidfile=str(pidfile),
        logfile=str(lifecycle.logs / "monitor.log"), started_at=datetime.now(UTC).isoformat()))
    when = (datetime.now(UTC) - timedelta(seconds=age)).isoformat(timespec="seconds")
    write_heartbeat(lifecycle.home / "run" / "monitor.heartbeat.json", MonitorHeartbeat(
        pid=process.pid, state=ListenState(listen_state), updated_at=when, interval=60, channels=("cars_msk",)))
    result = lifecycle.invoke("monitor", "status", "--json")
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["status"] == status

    process.kill()
    process.wait()
    crashed = lifecycle.invoke("monitor", "status", "--json")  # dead, its pidfile left behind
    assert crashed.exit_code == 5 and json.loads(crashed.stdout)["status"] == "crashed"


def test_the_publishers_session_is_refused_and_doctor_says_why(lifecycle: Any, monkeypatch: Any) -> None:
    for name, value in FAKE_TELEGRAM.items():
        monkeypatch.setenv(name, value)
    fine = json.loads(lifecycle.invoke("doctor", "--json").stdout)
    assert {"check": "monitor", "level": "ok", "message": "configured (its own Telegram session)", "fix": None} \
        in fine["findings"]
    monkeypatch.setenv("TELEGRAM_SESSION_STRING", FAKE_TELEGRAM["TELEGRAM_MONITOR_SESSION_STRING"])
    start = lifecycle.invoke("monitor", "start")
    assert start.exit_code == 2 and "is the publisher's session" in start.output
    assert lifecycle.state("monitor") is None
    shared = json.loads(lifecycle.invoke("doctor", "--json").stdout)
    (finding,) = [f for f in shared["findings"] if f["check"] == "monitor"]
    assert finding["level"] == "problem" and "TELEGRAM_SESSION_STRING" in finding["message"]


def test_posts_flow_in_and_a_stop_in_the_middle_of_an_album_completes_it(lifecycle: Any, db: Any) -> None:
    """As an operator sees it: messages arrive in a channel, posts are stored and sent to processing
    once each; `monitor stop` (SIGTERM) while an album is half delivered stores the whole album; a
    restart catches up what arrived meanwhile and ignores the deliveries it already has."""
    from sqlalchemy import select

    from cars_bot.broker import queue_depths
    from cars_bot.celery_app import app
    from cars_bot.db.models import Channel, Post
    from tests.carsctl.ops import wait_for

    with db.begin() as session:
        session.add(Channel(username="cars_msk", is_active=True, seller_phone="+79990001122"))
    lifecycle.env.update(FAKE_TELEGRAM)
    incoming, delivered = lifecycle.home / "incoming.jsonl", lifecycle.home / "delivered.txt"

    def arrive(*lines: dict[str, Any]) -> None:
        with open(incoming, "a") as out:
            out.writelines(json.dumps({"channel": "cars_msk", **line}) + "\n" for line in lines)

    def delivered_ids() -> list[int]:
        return [int(x) for x in delivered.read_text().split()] if delivered.exists() else []

    def posts() -> list[tuple[int, list[int]]]:
        with db() as session:
            return [(p.message_id, p.message_ids) for p in session.scalars(select(Post).order_by(Post.message_id))]

    def queued() -> int:
        return queue_depths(app, ["ai_processing"])["ai_processing"].ready

    assert lifecycle.run("monitor", "start").returncode == 0
    arrive({"id": 1, "text": "Продам Kia Rio 2017, 750 т.р."},
           {"id": 2, "text": "Toyota Camry 2018, 2.1 млн", "photo": True, "grouped_id": 77},
           {"id": 3, "photo": True, "grouped_id": 77},
           {"id": 4, "photo": True, "grouped_id": 77, "live": False})  # posted, but not delivered before the stop
    wait_for(lambda: delivered_ids() == [1, 2, 3], what="the deliveries")
    assert posts() == [(1, [])]  # the album is in hand, not stored yet
    stop = lifecycle.run("monitor", "stop")
    assert stop.returncode == 0, stop.stderr
    assert posts() == [(1, []), (2, [2, 3, 4])] and queued() == 2

    arrive({"id": 5, "text": "Пока монитор стоял: Lada Vesta 2020", "live": False})
    assert lifecycle.run("monitor", "start").returncode == 0  # delivers 1, 2, 3 again and catches up 5
    wait_for(lambda: delivered_ids() == [1, 2, 3, 1, 2, 3] and len(posts()) == 3, what="the catch-up")
    assert lifecycle.run("monitor", "stop").returncode == 0
    assert posts() == [(1, []), (2, [2, 3, 4]), (5, [])]
    assert queued() == 3  # one process_post_task per stored post, never one per delivery
