"""`carsctl systemd`: unit files with the stop semantics Celery needs; nothing installed by default."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def _units(text: str) -> dict[str, str]:
    parts = re.split(r"^# ===== (\S+) =====$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_units_for_the_default_layout(lifecycle) -> None:
    result = lifecycle.invoke("systemd")
    assert result.exit_code == 0, result.output
    units = _units(result.stdout)
    assert set(units) == {"cars-bot-worker.service", "cars-bot-beat.service", "cars-bot.target"}
    worker = units["cars-bot-worker.service"]
    assert "KillMode=mixed" in worker and "KillSignal=SIGTERM" in worker
    from cars_bot.celery_app import HARD_TIME_LIMIT, SOFT_TIME_LIMIT

    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M).group(1))
    assert stop > HARD_TIME_LIMIT > SOFT_TIME_LIMIT  # a warm shutdown may last as long as any task may run
    exec_start = re.search(r"^ExecStart=(.+)$", worker, re.M).group(1)
    assert " -m celery -A cars_bot.celery_app worker -n worker@%%h " in exec_start  # %h escaped for systemd
    assert "--pidfile" not in exec_start and "--detach" not in exec_start  # foreground under systemd
    assert "-c 4" in exec_start and "-Q default,ai_processing,publishing,sheets_sync,monitoring" in exec_start
    assert "WantedBy=multi-user.target" in units["cars-bot.target"]
    assert os.environ["REDIS_URL"] not in result.stdout  # values (secrets) stay in .env (EnvironmentFile)
    notes = [line for line in result.stdout.splitlines() if line.startswith("# ") and "=====" not in line]
    assert notes[0].startswith("# Worker nodes: worker (the default node: none runs now)")
    assert "User=root" in worker and "run as root" in notes[1]  # explicit, and said: pass --user-name
    assert "monitor" in notes[2]  # says why there is no monitor unit
    assert "REDIS_URL" in notes[3] and ".env" in notes[3]  # and what the units would not see
    assert "UMask=0077" in worker and re.search(r"^EnvironmentFile=-/.+/\.env$", worker, re.M)
    assert not (lifecycle.home / "nodes").exists()  # printing installs nothing


def test_user_units_with_a_dedicated_node_written_to_a_directory(lifecycle) -> None:
    out = lifecycle.tmp / "units"
    result = lifecycle.invoke("systemd", "--user", "--node", "main:default,publishing", "--node",
                              "ai:ai_processing:2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cars-bot-beat.service", "cars-bot-worker-ai.service",
                                                      "cars-bot-worker-main.service", "cars-bot.target"]
    ai = (out / "cars-bot-worker-ai.service").read_text()
    assert "-Q ai_processing" in ai and "-c 2" in ai and "celery_worker-ai.log" in ai
    assert "User=" not in ai
    # a user manager has no network-online.target: no dependency on it
    assert all("network-online" not in p.read_text() for p in out.iterdir())
    assert "WantedBy=default.target" in (out / "cars-bot.target").read_text()
    assert "systemctl --user daemon-reload" in result.stderr


def test_embedded_broker_gets_its_own_unit(lifecycle, monkeypatch, tmp_path) -> None:
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "embedded-home"
    monkeypatch.setenv("CARSCTL_HOME", str(home))
    result = lifecycle.invoke("systemd")
    assert result.exit_code == 0, result.output
    units = _units(result.stdout)
    assert set(units) == {"cars-bot-broker.service", "cars-bot-worker.service", "cars-bot-beat.service",
                          "cars-bot.target"}
    broker = units["cars-bot-broker.service"]
    # redis-server itself in the foreground, restarted by systemd when it crashes (not a forking oneshot)
    assert "Type=simple" in broker and "Type=oneshot" not in broker and "RemainAfterExit" not in broker
    exec_start = re.search(r"^ExecStart=(.+)$", broker, re.M).group(1)
    assert "redis-server --port 0 --unixsocket " in exec_start and " --daemonize no " in exec_start, exec_start
    assert f"--unixsocket {home / 'redis.sock'} " in exec_start  # the socket the workers will look for
    assert " --appendonly yes " in exec_start
    assert "Restart=on-failure" in broker and "UMask=0077" in broker and "User=root" in broker
    assert f"Environment=CARSCTL_HOME={home} " in broker
    for unit in ("cars-bot-worker.service", "cars-bot-beat.service"):  # started after it, stopped with it
        assert "Requires=cars-bot-broker.service" in units[unit]
        assert re.search(r"^After=.*\bcars-bot-broker\.service\b", units[unit], re.M), units[unit]
    assert "Wants=cars-bot-broker.service" in units["cars-bot.target"]
    assert not home.exists()  # printing the units starts nothing and creates nothing


def _state(home: Path, name: str, *, stopped: bool) -> None:
    directory = home / "nodes" / ("stopped" if stopped else "")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps({
        "name": name, "hostname": f"{name}@host", "queues": ["ai_processing"], "concurrency": 2,
        "pool": "prefork", "logfile": str(home / f"{name}.log"), "pidfile": str(home / f"{name}.pid")}))


def test_units_for_the_running_nodes_not_every_node_ever_started(lifecycle) -> None:
    _state(lifecycle.home, "ai", stopped=False)
    for name in ("worker", "t-test-1"):  # stopped: a node tried once, a test node
        _state(lifecycle.home, name, stopped=True)
    result = lifecycle.invoke("systemd")
    assert result.exit_code == 0, result.output
    units = _units(result.stdout)
    assert set(units) == {"cars-bot-worker-ai.service", "cars-bot-beat.service", "cars-bot.target"}
    assert "-Q ai_processing" in units["cars-bot-worker-ai.service"]
    assert "# Worker nodes: ai (running now)" in result.stdout
    given = _units(lifecycle.invoke("systemd", "--node", "main").stdout)  # asked for: exactly those
    assert set(given) == {"cars-bot-worker-main.service", "cars-bot-beat.service", "cars-bot.target"}


def test_user_name_and_group(lifecycle) -> None:
    result = lifecycle.invoke("systemd", "--user-name", "nobody", "--group", "nogroup")
    assert result.exit_code == 0, result.output
    services = [text for name, text in _units(result.stdout).items() if name.endswith(".service")]
    assert services and all("User=nobody\nGroup=nogroup\n" in text for text in services)
    assert "They run as user nobody: it must own" in result.stdout
    unknown = lifecycle.invoke("systemd", "--user-name", "no-such-user-here")
    assert unknown.exit_code == 2 and "no user 'no-such-user-here'" in unknown.output
    assert lifecycle.invoke("systemd", "--group", "no-such-group-here").exit_code == 2
    user_units = lifecycle.invoke("systemd", "--user", "--user-name", "nobody")
    assert user_units.exit_code == 2 and "for system units" in user_units.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("embedded", [False, True], ids=["redis-url", "embedded-broker"])
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_analyze_verify_is_clean(lifecycle, monkeypatch, tmp_path, embedded: bool, user: bool) -> None:
    if embedded:
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CARSCTL_HOME", str(tmp_path / "h"))
    out = tmp_path / "units"
    args = ["--user"] if user else ["--user-name", "daemon", "--group", "daemon"]  # systemd warns on nobody
    result = lifecycle.invoke("systemd", *args, "--node", "main:default,publishing", "--node",
                              "ai:ai_processing:2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(str(p) for p in out.iterdir())
    assert len(files) == (5 if embedded else 4)
    runtime = tmp_path / "runtime"  # a user manager needs its runtime directory
    runtime.mkdir(mode=0o700)
    verify = subprocess.run(["systemd-analyze", *(["--user"] if user else []), "verify", *files],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_the_broker_units_redis_runs_in_the_foreground_and_a_crash_is_a_failure(short_home: Path) -> None:
    """The broker unit's own commands, run as systemd would: Redis stays the direct child (Type=simple),
    answers on the socket, exits 0 on SIGTERM (a stop) and non-zero when killed (Restart=on-failure)."""
    import shlex
    import signal
    import time

    from cars_bot.config import load_settings
    from carsctl.lifecycle.systemd_units import BROKER_UNIT, service_account, systemd_units
    from carsctl.process import embedded_redis

    settings = load_settings({"CARSCTL_HOME": str(short_home / "h"), "LOG_DIR": str(short_home / "logs")},
                             cwd=short_home)
    unit = systemd_units(settings, [], account=service_account(user_units=True), user=True)[BROKER_UNIT]
    pre, start = (shlex.split(re.search(rf"^{key}=(.+)$", unit, re.M).group(1))
                  for key in ("ExecStartPre", "ExecStart"))
    subprocess.run(pre, check=True, timeout=30)
    for stop, expected in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
        redis = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            status = embedded_redis.status(settings)
            while not status.running and redis.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # poll until it answers (or exits: the assert below says so)
                status = embedded_redis.status(settings)
            assert status.running and status.pid == redis.pid  # in the foreground: systemd's main process
        finally:
            redis.send_signal(stop)
            assert redis.wait(timeout=30) == expected
