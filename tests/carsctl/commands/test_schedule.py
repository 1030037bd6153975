"""`carsctl schedule`: the seed's periodic-task table as live data."""

from __future__ import annotations

import json

import pytest

from tests.carsctl.cli import invoke

pytestmark = pytest.mark.redis


def test_schedule_without_beat_computes_crontab_runs(celery_app_real, redis_client, settings) -> None:
    result = invoke("schedule", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    entries = {e["name"]: e for e in report["entries"]}
    assert len(entries) == 7 and report["beat"]["state"] == "not seen"
    hourly = entries["update-analytics-hourly"]
    assert hourly["schedule"] == "cron 0 * * * *" and hourly["next_run_at"] and hourly["next_from"] == "computed"
    assert hourly["queue"] == "sheets_sync" and hourly["alias"] == "update-analytics"
    assert entries["sync-channels-every-minute"]["next_run_at"] is None  # one interval after beat starts
    table = invoke("schedule")
    assert "cleanup-old-results-daily" in table.stdout and "after beat starts" in table.stdout


def test_schedule_takes_times_from_beat_heartbeat(celery_app_real, redis_client, settings, beat_heartbeat) -> None:
    beat_heartbeat(1)
    report = json.loads(invoke("schedule", "--json").stdout)
    entry = next(e for e in report["entries"] if e["name"] == "collect-stats-every-15-minutes")
    assert entry["last_run_at"] and entry["next_run_at"] and entry["next_from"] == "beat"
    assert report["beat"]["state"] == "alive" and report["beat"]["host"] == "beat-host"
    assert report["beat"]["heartbeat"] is None  # its entries are the rows above, not repeated
