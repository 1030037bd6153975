from pathlib import Path

import pytest

from cars_bot.config import ConfigError, load_settings
from cars_bot.secret_masking import mask, mask_secrets_in, mask_url


def test_defaults_use_embedded_broker_and_sqlite(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.uses_embedded_broker
    assert settings.broker_url == f"redis+socket://{tmp_path / '.carsctl' / 'redis.sock'}"
    assert settings.result_backend_url == settings.broker_url
    assert settings.database_url == f"sqlite:///{tmp_path / '.carsctl' / 'cars_bot.sqlite3'}"
    assert settings.log_dir == tmp_path / "logs"
    assert all(source == "default" for source in settings.sources.values())


def test_redis_url_and_overrides(tmp_path: Path) -> None:
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:6379/0",
                              "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/1"}, cwd=tmp_path)
    assert not settings.uses_embedded_broker
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.result_backend_url == "redis://127.0.0.1:6379/1"
    broker = load_settings({"REDIS_URL": "redis://h:6379/0", "CELERY_BROKER_URL": "amqp://guest@h//"},
                           cwd=tmp_path)
    assert broker.broker_url == "amqp://guest@h//"
    assert broker.result_backend_url == "redis://h:6379/0"


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_MODEL=gpt-4o\nMIN_PRICE=100000\nOPENAI_API_KEY=sk-from-dotenv-123456\n")
    settings = load_settings({"OPENAI_MODEL": "gpt-4o-mini"}, cwd=tmp_path)
    assert settings.openai_model == "gpt-4o-mini"
    assert settings.sources["openai_model"] == "environment"
    assert settings.min_price == 100000
    assert settings.sources["min_price"] == ".env"
    assert settings.openai_api_key == "sk-from-dotenv-123456"


@pytest.mark.parametrize(("env", "fragment"), [
    ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL has an unsupported scheme 'http://'"),
    ({"MIN_PRICE": "cheap"}, "MIN_PRICE must be an integer, got 'cheap'"),
    ({"PUBLISH_RATE_PER_MINUTE": "0"}, "PUBLISH_RATE_PER_MINUTE must be an integer from 1 to 10000"),
    ({"MIN_CONFIDENCE_SCORE": "1.5"}, "MIN_CONFIDENCE_SCORE must be between 0 and 1"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL has an unsupported scheme"),
])
def test_malformed_values_name_the_variable(tmp_path: Path, env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, cwd=tmp_path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_are_masked(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-proj-abcdefghijklmnop1234", "TELEGRAM_BOT_TOKEN": "123456:ABC-DEF1234ghIkl",
           "REDIS_URL": "redis://:hunter2pass@redis.internal:6379/0",
           "TELEGRAM_SESSION_STRING": "1BVtsOKABu" + "x" * 300}
    settings = load_settings(env, cwd=tmp_path)
    shown = {row.name: row.value for row in settings.describe()}
    assert shown["OPENAI_API_KEY"] == "****1234"
    assert shown["TELEGRAM_BOT_TOKEN"] == "****hIkl"
    assert shown["REDIS_URL"] == "redis://:****@redis.internal:6379/0"
    assert "x" * 20 not in str(shown["TELEGRAM_SESSION_STRING"])
    text = "failed with key sk-proj-abcdefghijklmnop1234 at redis://:hunter2pass@redis.internal:6379/0"
    masked = mask_secrets_in(text, settings)
    assert "hunter2pass" not in masked and "abcdefghijklmnop" not in masked


def test_mask_helpers() -> None:
    assert mask("short") == "****"
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:****@h:1/0"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"


def test_integrations_not_configured_without_credentials(tmp_path: Path) -> None:
    states = load_settings({}, cwd=tmp_path).integrations()
    assert states["openai"].startswith("not configured (set OPENAI_API_KEY")
    assert states["telegram"].startswith("not configured")
    assert states["sheets"].startswith("not configured")
    env = {"OPENAI_API_KEY": "sk-123456789012", "TELEGRAM_CHANNEL": "@cars", "TELEGRAM_BOT_TOKEN": "1:abcdefghijkl",
           "TELEGRAM_API_ID": "12345", "TELEGRAM_API_HASH": "0123456789abcdef"}
    configured = load_settings(env, cwd=tmp_path).integrations()
    assert configured["openai"] == "configured" and configured["telegram"] == "configured"


def _numeric_vars() -> list:
    from cars_bot.config import VARS

    def parsed(var):  # the value "1" gives, None if the variable is not a number at all
        try:
            return var.parse(var.name, "1")
        except ConfigError:
            return None

    return [var for var in VARS if type(parsed(var)) in (int, float)]


@pytest.mark.parametrize("var", _numeric_vars(), ids=lambda var: var.name)
@pytest.mark.parametrize("raw", ["-1", "nan", "inf", "-inf", "1e30", "9" * 30])
def test_every_numeric_setting_has_a_range(var, raw) -> None:
    """Out of range, nan or inf is refused naming the variable (BROKER_CONNECT_TIMEOUT=nan was accepted
    and surfaced later as "broker unreachable: Timeout value out of range")."""
    with pytest.raises(ConfigError, match=var.name):
        load_settings({var.name: raw}, cwd=Path("/nonexistent"))


def test_numeric_settings_are_found() -> None:
    names = {var.name for var in _numeric_vars()}
    assert {"BROKER_CONNECT_TIMEOUT", "RESULT_EXPIRES", "OPENAI_TIMEOUT", "MIN_PRICE", "MAX_PRICE",
            "TELEGRAM_API_ID", "PUBLISH_RATE_PER_MINUTE", "MIN_CONFIDENCE_SCORE"} <= names
