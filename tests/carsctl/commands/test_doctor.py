"""`carsctl doctor`: each pitfall found, with a fix; exit 1 only for real problems."""

from __future__ import annotations

import json

import pytest

from tests.carsctl.cli import invoke, run_carsctl

pytestmark = pytest.mark.redis


def by_check(report: dict) -> dict[str, dict]:
    return {finding["check"]: finding for finding in report["findings"]}


def test_the_project_configuration_is_healthy(celery_app_real, db, settings) -> None:
    result = invoke("doctor", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["healthy"], report
    checks = by_check(report)
    assert checks["broker"]["level"] == "ok" and checks["database"]["level"] == "ok"
    assert checks["visibility timeout"]["level"] == "ok"
    assert checks["result expiry"]["level"] == "ok" and checks["acks late"]["level"] == "ok"
    assert checks["workers"]["level"] == "warning" and checks["workers"]["fix"] == "carsctl worker start"
    assert checks["openai"]["level"] == "warning" and "OPENAI_API_KEY" in checks["openai"]["fix"]
    text = invoke("doctor")
    assert text.exit_code == 0 and "fix: carsctl worker start" in text.stdout


def test_misconfigurations_are_problems_with_fixes(settings) -> None:
    from celery import Celery

    from carsctl.health.checkup import Level, check_configuration

    app = Celery("misconfigured", set_as_current=False)
    app.conf.update(broker_transport_options={"visibility_timeout": 60}, task_time_limit=1800,
                    task_acks_late=True, task_reject_on_worker_lost=False, result_expires=None)
    checks = {f.check: f for f in check_configuration(app, settings)}
    assert checks["visibility timeout"].level == Level.PROBLEM
    assert "above 3600s" in checks["visibility timeout"].fix  # the longest countdown of the project
    assert checks["result expiry"].level == Level.PROBLEM and "RESULT_EXPIRES" in checks["result expiry"].fix
    assert checks["acks late"].level == Level.PROBLEM
    assert "task_reject_on_worker_lost=True" in checks["acks late"].fix


def test_reply_keys_without_ttl_are_found(celery_app_real, redis_client) -> None:
    from carsctl.health.checkup import Level, check_pidbox_keys

    for number in range(25):
        redis_client.rpush(f"{number:04x}.reply.celery.pidbox", "late reply")
    [finding] = check_pidbox_keys(celery_app_real)
    assert finding.level == Level.PROBLEM and finding.message.startswith("25 ")
    for number in range(25):
        redis_client.expire(f"{number:04x}.reply.celery.pidbox", 60)
    assert check_pidbox_keys(celery_app_real)[0].level == Level.OK


def test_a_log_directory_that_cannot_be_created_is_a_problem(settings, tmp_path, monkeypatch) -> None:
    from cars_bot.config import get_settings, reset_settings
    from carsctl.health.checkup import Level, check_log_dir

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("LOG_DIR", str(blocker / "logs"))
    reset_settings()
    [finding] = check_log_dir(get_settings())
    assert finding.level == Level.PROBLEM and "LOG_DIR" in finding.fix


def test_broker_down_is_a_problem_and_the_broker_side_checks_are_skipped() -> None:
    result = run_carsctl("doctor", "--json", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    checks = by_check(report)
    assert checks["broker"]["level"] == "problem"
    assert checks["broker"]["message"].startswith("broker unreachable at redis://127.0.0.1:1/0")
    assert checks["workers"] == {"check": "workers", "level": "warning", "fix": None,
                                 "message": "not checked: the broker is unreachable"}
    assert not {"clock skew", "beat", "pidbox replies"} & set(checks)  # not attempted against a dead broker
    assert report["healthy"] is False and report["counts"]["problem"] >= 1


def test_a_queue_with_messages_and_no_consumer_is_a_problem_with_the_fix(celery_app_real, db, settings) -> None:
    from cars_bot.task_names import PROCESS_POST

    assert by_check(json.loads(invoke("doctor", "--json").stdout))["queue consumers"]["level"] == "ok"
    celery_app_real.send_task(PROCESS_POST, args=[42], queue="ai_processing")
    result = invoke("doctor", "--json")
    finding = by_check(json.loads(result.stdout))["queue consumers"]
    assert result.exit_code == 1 and finding["level"] == "problem"
    assert finding["message"] == "ai_processing: 1 message(s) waiting and no worker consumes it"
    assert finding["fix"] == "start a worker consuming ai_processing: carsctl worker start ai -Q ai_processing"
def test_a_malformed_session_string_is_a_problem(settings, monkeypatch) -> None:
    import base64

    from cars_bot.config import get_settings, reset_settings
    from carsctl.health.checkup import Level, check_sessions

    monkeypatch.setenv("TELEGRAM_SESSION_STRING", "1" + base64.urlsafe_b64encode(b"\x02" * 20).decode())
    reset_settings()
    [finding] = check_sessions(get_settings())
    assert finding.check == "TELEGRAM_SESSION_STRING" and finding.level == Level.PROBLEM
    assert finding.message.startswith("invalid:") and "create the session again" in finding.fix
    monkeypatch.delenv("TELEGRAM_SESSION_STRING")
    reset_settings()
    assert check_sessions(get_settings()) == []
