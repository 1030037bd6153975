import json

import pytest

from tests.carsctl.cli import invoke


def test_config_show_masks_secrets_and_names_sources(settings, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnopqrstuvwxyz")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ew")
    monkeypatch.setenv("REDIS_URL", "redis://:topsecretpw@127.0.0.1:6379/2")
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    rows = {row["name"]: row for row in data["variables"]}
    assert rows["OPENAI_API_KEY"]["value"] == "****wxyz"
    assert rows["OPENAI_API_KEY"]["source"] == "environment"
    assert rows["OPENAI_MODEL"]["source"] == "default"
    assert rows["REDIS_URL"]["value"] == "redis://:****@127.0.0.1:6379/2"
    assert data["derived"]["broker_url"] == "redis://:****@127.0.0.1:6379/2"
    for secret in ("abcdefghijklmnop", "AAEhBOweik6ad9r", "topsecretpw"):
        assert secret not in result.output
    assert data["integrations"]["openai"] == "configured"
    assert data["integrations"]["sheets"].startswith("not configured")


def test_config_show_table(settings) -> None:
    result = invoke("config", "show")
    assert result.exit_code == 0
    assert "CARSCTL_HOME" in result.stdout and "REDIS_URL" in result.stdout


def test_malformed_value_is_one_line_exit_2(settings, monkeypatch) -> None:
    monkeypatch.setenv("PUBLISH_RATE_PER_MINUTE", "lots")
    result = invoke("config", "show")
    assert result.exit_code == 2
    assert "PUBLISH_RATE_PER_MINUTE must be an integer, got 'lots'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_config_show_says_whether_the_session_string_is_valid(settings, monkeypatch) -> None:
    import base64

    malformed = "1" + base64.urlsafe_b64encode(b"\x02" * 20).decode()  # valid base64: struct.error
    monkeypatch.setenv("TELEGRAM_SESSION_STRING", malformed)
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0
    state = json.loads(result.stdout)["sessions"]["TELEGRAM_SESSION_STRING"]
    assert state.startswith("invalid: not a telethon StringSession") and malformed not in result.output
    table = invoke("config", "show")
    assert "TELEGRAM_SESSION_STRING" in table.stdout and "invalid" in table.stdout
@pytest.mark.db
def test_config_show_names_the_source_of_each_filter_value(settings, db, monkeypatch) -> None:
    from cars_bot.db.models import SheetFilter, utcnow

    monkeypatch.setenv("MIN_PRICE", "300000")
    monkeypatch.setenv("MAX_PRICE", "9000000")
    with db.begin() as session:
        session.add_all([
            SheetFilter(attr="max_price", value=2_000_000, raw="2 млн", updated_at=utcnow()),
            SheetFilter(attr="min_confidence", value=None, raw="abc", updated_at=utcnow(),
                        error="Настройки фильтров row 3 (Порог уверенности AI): 'abc' is not a number"),
        ])
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["filters"]
    views = {f["name"]: f for f in report["filters"]}
    assert report["sheet_values"] == "read"
    assert (views["MAX_PRICE"]["value"], views["MAX_PRICE"]["source"]) == (2_000_000, "sheet")
    assert (views["MIN_PRICE"]["value"], views["MIN_PRICE"]["source"]) == (300_000, "environment")
    assert (views["MIN_CONFIDENCE_SCORE"]["value"], views["MIN_CONFIDENCE_SCORE"]["source"]) == (0.75, "default")
    assert "'abc' is not a number" in views["MIN_CONFIDENCE_SCORE"]["sheet_error"]
    table = invoke("config", "show")
    assert "Filters (sheet values read)" in table.stdout and "sheet" in table.stdout
