"""`carsctl systemd`: unit files with the stop semantics Celery needs; nothing installed by default."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from tests.carsctl.test_lifecycle_fixtures import lifecycle_fixture  # noqa: F401 - the fixture


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
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M).group(1))
    assert stop > 30 * 60 > 25 * 60  # longer than the hard (and so the soft) time limit
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


def test_embedded_broker_gets_its_own_unit(lifecycle, monkeypatch) -> None:
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARSCTL_HOME", tempfile.mkdtemp(prefix="cbs-"))
    units = _units(lifecycle.invoke("systemd").stdout)
    assert "ExecStart=" in units["cars-bot-broker.service"] and "broker start" in units["cars-bot-broker.service"]
    assert "Requires=cars-bot-broker.service" in units["cars-bot-worker.service"]
    assert Path(tempfile.gettempdir()).exists()
