"""`carsctl systemd`: unit files with the stop semantics Celery needs; nothing installed by default."""

from __future__ import annotations

import os
import re


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
    assert "monitor" in notes[0]  # says why there is no monitor unit
    assert "REDIS_URL" in notes[1] and ".env" in notes[1]  # and what the units would not see
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
    # a oneshot that stays "active": `carsctl broker start` returns once the daemonized Redis answers
    assert "Type=oneshot" in broker and "RemainAfterExit=yes" in broker
    assert re.search(r"^ExecStart=.+ -m carsctl broker start$", broker, re.M), broker
    assert re.search(r"^ExecStop=.+ -m carsctl broker stop$", broker, re.M), broker
    assert f"Environment=CARSCTL_HOME={home} " in broker  # the socket the workers will look for
    for unit in ("cars-bot-worker.service", "cars-bot-beat.service"):  # started after it, stopped with it
        assert "Requires=cars-bot-broker.service" in units[unit]
        assert re.search(r"^After=.*\bcars-bot-broker\.service\b", units[unit], re.M), units[unit]
    assert "Wants=cars-bot-broker.service" in units["cars-bot.target"]
    assert not home.exists()  # printing the units starts nothing and creates nothing
