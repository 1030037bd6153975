"""Configuration: every environment variable of the project is named here, and only here.

Values come from the process environment, then from a `.env` file in the working directory (the
environment wins), then from the defaults below. A malformed value raises :class:`ConfigError`, whose
message is one line naming the variable. Secrets are masked by `cars_bot.secret_masking` wherever they are shown.

This module imports only the standard library (python-dotenv lazily), so the CLI can read settings
without paying for Celery, SQLAlchemy or the API clients.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cars_bot.secret_masking import mask, mask_url

QUEUES: tuple[str, ...] = ("default", "ai_processing", "publishing", "sheets_sync", "monitoring")


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable."""


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, default, parser and whether it is a secret."""

    name: str
    attr: str
    default: Any
    parse: Callable[[str, str], Any]
    help: str
    secret: bool = False
    group: str = "core"


def _str(name: str, raw: str) -> str | None:
    return raw.strip() or None


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    """An integer from `low` to `high` (both included)."""

    def parse(name: str, raw: str) -> int:
        value = _int(name, raw)
        if not low <= value <= high:
            raise ConfigError(f"{name} must be an integer from {low} to {high}, got {raw.strip()[:40]!r}")
        return value

    return parse


def _seconds(high: float, low: float = 0.0) -> Callable[[str, str], float]:
    """A duration in seconds: above 0, at least `low` and at most `high` (not nan, not inf)."""
    floor = f"at least {low:g}" if low > 0 else "above 0"

    def parse(name: str, raw: str) -> float:
        value = _float(name, raw)
        if not (0 < value <= high and value >= low):  # False for nan too
            raise ConfigError(f"{name} must be a number of seconds {floor} and at most {high:g}, "
                              f"got {raw.strip()[:40]!r}")
        return value

    return parse


MAX_INT64 = 2**63 - 1  # prices are BIGINT columns
MAX_DAYS = 36_500


def _fraction(name: str, raw: str) -> float:
    value = _float(name, raw)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {raw!r}")
    return value


def _on_off(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no", ""):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _words(name: str, raw: str) -> tuple[str, ...]:
    return tuple(w.strip().lower() for w in raw.split(",") if w.strip())


def _prices(name: str, raw: str) -> tuple[str, ...]:
    from cars_bot.ai.prices import parse_prices

    try:
        prices = parse_prices(raw)
    except ValueError as error:
        raise ConfigError(f"{name}: {error} (format: model=input/output[/cached],...)") from None
    return tuple(f"{model}={price.text}" for model, price in prices.items())


def _path(name: str, raw: str) -> Path:
    if not raw.strip():
        raise ConfigError(f"{name} must be a path, got an empty value")
    return Path(raw.strip()).expanduser()


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str | None]:
    def parse(name: str, raw: str) -> str | None:
        raw = raw.strip()
        if not raw:
            return None
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        if scheme not in schemes:
            allowed = ", ".join(f"{s}://" for s in schemes)
            shown = scheme + "://" if scheme else mask_url(raw)
            raise ConfigError(f"{name} has an unsupported scheme {shown!r}: use {allowed}")
        return raw

    return parse


REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp", "sentinel", "sqs", "memory")
BACKEND_SCHEMES = (*REDIS_SCHEMES, "db+sqlite", "db+postgresql", "rpc", "cache+memory", "sentinel")
DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")

VARS: tuple[Var, ...] = (
    # state and logs
    Var("CARSCTL_HOME", "home_raw", Path(".carsctl"), _path,
        "State directory: pidfiles, node state, the embedded Redis socket, the SQLite file."),
    Var("LOG_DIR", "log_dir_raw", Path("logs"), _path, "Log directory (celery_worker.log, celery_beat.log)."),
    # broker, backend, database
    Var("REDIS_URL", "redis_url", None, _url(REDIS_SCHEMES),
        "Broker and result backend. Unset: the embedded Redis under CARSCTL_HOME.", secret=False, group="broker"),
    Var("CELERY_BROKER_URL", "celery_broker_url", None, _url(BROKER_SCHEMES),
        "Overrides REDIS_URL for the broker.", group="broker"),
    Var("CELERY_RESULT_BACKEND", "celery_result_backend", None, _url(BACKEND_SCHEMES),
        "Overrides REDIS_URL for the result backend.", group="broker"),
    Var("DATABASE_URL", "database_url_raw", None, _url(DB_SCHEMES),
        "SQLAlchemy URL. Unset: SQLite at CARSCTL_HOME/cars_bot.sqlite3.", group="database"),
    Var("RESULT_EXPIRES", "result_expires", 86400, _int_in(1, 10 * 365 * 86400),
        "Seconds a task result is kept in the result backend.", group="broker"),
    Var("BROKER_CONNECT_TIMEOUT", "broker_connect_timeout", 3.0, _seconds(600),
        "Seconds a command waits for the broker before it reports it unreachable.", group="broker"),
    Var("BROKER_SOCKET_TIMEOUT", "broker_socket_timeout", 15.0, _seconds(600, low=2),
        "Seconds a read or write on an open broker/result-backend connection may take before it is "
        "dropped and retried (above the 1 s a worker's BRPOP waits).", group="broker"),
    Var("BEAT_LOCK_TTL", "beat_lock_ttl", 60.0, _seconds(3600, low=5),
        "Seconds the beat lock outlives a silent beat: a stopped or partitioned beat is replaced, "
        "and stops sending, after this.", group="broker"),
    # AI
    Var("OPENAI_API_KEY", "openai_api_key", None, _str, "OpenAI API key. Unset: the offline rules backend.",
        secret=True, group="ai"),
    Var("OPENAI_MODEL", "openai_model", "gpt-4o-mini", _str, "OpenAI model.", group="ai"),
    Var("OPENAI_BASE_URL", "openai_base_url", None, _url(("http", "https")), "OpenAI-compatible API base URL.",
        group="ai"),
    Var("OPENAI_TIMEOUT", "openai_timeout", 30.0, _seconds(3600), "Seconds per OpenAI request.", group="ai"),
    Var("OPENAI_PRICES", "openai_prices", (), _prices,
        "USD per 1M tokens by exact model name, model=input/output[/cached],...; extends the built-in table "
        "(cached input defaults to half the input price).", group="ai"),
    Var("MIN_CONFIDENCE_SCORE", "min_confidence", 0.75, _fraction,
        "A post is treated as a sale ad only at or above this classifier confidence.", group="ai"),
    Var("MIN_PRICE", "min_price", None, _int_in(0, MAX_INT64), "Reject ads priced below this (RUB).", group="ai"),
    Var("MAX_PRICE", "max_price", None, _int_in(0, MAX_INT64), "Reject ads priced above this (RUB).", group="ai"),
    Var("EXCLUDED_WORDS", "excluded_words", (), _words, "Comma list: reject posts containing any of them.",
        group="ai"),
    # Telegram
    Var("TELEGRAM_API_ID", "telegram_api_id", None, _int_in(1, 2**31 - 1), "Telegram API id (my.telegram.org).",
        group="telegram"),
    Var("TELEGRAM_API_HASH", "telegram_api_hash", None, _str, "Telegram API hash.", secret=True, group="telegram"),
    Var("TELEGRAM_SESSION_STRING", "telegram_session_string", None, _str,
        "Telethon StringSession of the publishing account.", secret=True, group="telegram"),
    Var("TELEGRAM_MONITOR_SESSION_STRING", "telegram_monitor_session_string", None, _str,
        "Telethon StringSession of the monitor's own account (one session per process).", secret=True,
        group="telegram"),
    Var("TELEGRAM_BOT_TOKEN", "telegram_bot_token", None, _str, "Bot token (publishing as a bot).", secret=True,
        group="telegram"),
    Var("TELEGRAM_BOT_USERNAME", "telegram_bot_username", None, _str,
        "Bot username for the contact deep link.", group="telegram"),
    Var("TELEGRAM_CHANNEL", "telegram_channel", None, _str,
        "Target channel (@name or -100...). Unset: publish to the outbox.", group="telegram"),
    Var("PUBLISH_RATE_PER_MINUTE", "publish_rate_per_minute", 20, _int_in(1, 10_000),
        "Posts per minute to the target channel, across the whole cluster.", group="telegram"),
    # Google Sheets
    Var("GOOGLE_CREDENTIALS_FILE", "google_credentials_file", None, _path,
        "Service-account JSON file. Unset: the local workbook.", group="sheets"),
    Var("GOOGLE_SPREADSHEET_ID", "google_spreadsheet_id", None, _str, "Spreadsheet id (the admin panel).",
        group="sheets"),
    Var("SHEETS_WORKBOOK", "sheets_workbook_raw", None, _path,
        "Local workbook used when Google is not configured. Default: CARSCTL_HOME/workbook.json.", group="sheets"),
    # retention
    Var("STATS_RETENTION_DAYS", "stats_retention_days", 90, _int_in(1, MAX_DAYS), "Days stats snapshots are kept.",
        group="maintenance"),
    Var("FAILED_TASK_RETENTION_DAYS", "failed_task_retention_days", 30, _int_in(1, MAX_DAYS),
        "Days failed-task records are kept.", group="maintenance"),
    # the monitor service
    Var("MONITOR_UPDATE_INTERVAL", "monitor_update_interval", 60, _int_in(5, 3600),
        "Seconds between the monitor's reads of the active channels (5-3600): a channel added in the sheet "
        "is joined within one interval, a deactivated one dropped.", group="telegram"),
    Var("MONITOR_CLIENT_FACTORY", "monitor_client_factory", None, _str,
        "Tests only: `module:function` returning a Telethon-like client for the monitor (no network).",
        group="telegram"),
    # one ad, one publication; the filters the sheet "Настройки фильтров" may override
    Var("DUPLICATE_WINDOW_DAYS", "duplicate_window_days", 14, _int_in(0, 365),
        "A repost of an ad published within this many days (0-365; 0: off) is stored as `duplicate`, "
        "not published again.", group="ai"),
    Var("GLOBAL_KEYWORDS", "global_keywords", (), _words,
        "Comma list: when set, only posts containing at least one of them are analysed.", group="ai"),
    Var("MODERATION", "moderation", "auto", _choice(("auto", "manual")),
        "auto: a post that passes the filters is published; manual: it waits in the sheet \"Очередь "
        "публикаций\" as PENDING until an admin sets APPROVED or REJECTED.", group="sheets"),
    Var("LOG_TO_SHEETS", "log_to_sheets", False, _on_off,
        "on: warnings and errors of the workers and the monitor are appended to the sheet \"Логи\" (one write "
        "a minute at most, 50 rows a write).", group="sheets"),
)

_BY_ATTR = {v.attr: v for v in VARS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration: one typed field per variable of VARS (its `attr`), the source of
    each value (`sources`: "environment", ".env" or "default") and the directory relative paths are
    resolved against. Derived values (absolute paths, the broker URL) are properties below."""

    home_raw: Path
    log_dir_raw: Path
    redis_url: str | None
    celery_broker_url: str | None
    celery_result_backend: str | None
    database_url_raw: str | None
    result_expires: int
    broker_connect_timeout: float
    broker_socket_timeout: float
    beat_lock_ttl: float
    openai_api_key: str | None
    openai_model: str
    openai_base_url: str | None
    openai_timeout: float
    openai_prices: tuple[str, ...]  # "model=input/output[/cached]" items (cars_bot.ai.prices)
    min_confidence: float
    min_price: int | None
    max_price: int | None
    excluded_words: tuple[str, ...]
    telegram_api_id: int | None
    telegram_api_hash: str | None
    telegram_session_string: str | None
    telegram_monitor_session_string: str | None
    telegram_bot_token: str | None
    telegram_bot_username: str | None
    telegram_channel: str | None
    publish_rate_per_minute: int
    google_credentials_file: Path | None
    google_spreadsheet_id: str | None
    sheets_workbook_raw: Path | None
    stats_retention_days: int
    failed_task_retention_days: int
    monitor_update_interval: int
    monitor_client_factory: str | None
    duplicate_window_days: int
    global_keywords: tuple[str, ...]
    moderation: str
    log_to_sheets: bool
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    cwd: Path = field(default_factory=Path.cwd, compare=False)

    # derived values -------------------------------------------------------------------------
    def value(self, var: Var) -> Any:
        """The parsed value of one variable."""
        return getattr(self, var.attr)

    @property
    def home(self) -> Path:
        return self._absolute(self.home_raw)

    @property
    def log_dir(self) -> Path:
        return self._absolute(self.log_dir_raw)

    def _absolute(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.cwd / path)

    @property
    def embedded_socket(self) -> Path:
        return self.home / "redis.sock"

    @property
    def uses_embedded_broker(self) -> bool:
        """True when no broker/backend URL is configured: carsctl runs its own Redis."""
        return not (self.redis_url or self.celery_broker_url or self.celery_result_backend)

    @property
    def embedded_url(self) -> str:
        return f"redis+socket://{self.embedded_socket}"

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url or self.embedded_url

    @property
    def result_backend_url(self) -> str:
        return self.celery_result_backend or self.redis_url or self.embedded_url

    @property
    def database_url(self) -> str:
        return self.database_url_raw or f"sqlite:///{self.home / 'cars_bot.sqlite3'}"

    @property
    def sheets_workbook(self) -> Path:
        raw = self.sheets_workbook_raw
        return self._absolute(raw) if raw else self.home / "workbook.json"

    def integrations(self) -> dict[str, str]:
        """Each integration's state: 'configured' or 'not configured (<what is missing>)'."""

        def state(required: Mapping[str, Any]) -> str:
            missing = [name for name, value in required.items() if not value]
            return "configured" if not missing else f"not configured (set {', '.join(missing)})"

        # telethon needs the API id and hash even to log in as a bot
        telegram_auth = self.telegram_bot_token or self.telegram_session_string
        return {
            "openai": state({"OPENAI_API_KEY": self.openai_api_key}),
            "telegram": state({
                "TELEGRAM_CHANNEL": self.telegram_channel,
                "TELEGRAM_API_ID": self.telegram_api_id,
                "TELEGRAM_API_HASH": self.telegram_api_hash,
                "TELEGRAM_BOT_TOKEN or TELEGRAM_SESSION_STRING": telegram_auth,
            }),
            "sheets": state({
                "GOOGLE_CREDENTIALS_FILE": self.google_credentials_file,
                "GOOGLE_SPREADSHEET_ID": self.google_spreadsheet_id,
            }),
        }

    def describe(self) -> list[SettingView]:
        """Every variable with its masked effective value and source, for `carsctl config show`."""
        return [SettingView(name=var.name, group=var.group, value=display_value(var, self.value(var)),
                            source=self.sources[var.attr], help=var.help) for var in VARS]


@dataclass(frozen=True)
class SettingView:
    """One variable as it may be shown: its value masked, and where it came from."""

    name: str
    group: str
    value: Any
    source: str
    help: str


def display_value(var: Var, value: Any) -> Any:
    """A value as it may be shown: secrets masked, passwords in URLs masked, tuples joined."""
    if value is None:
        return None
    if var.secret:
        return mask(str(value))
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read every variable from `environ` (default os.environ) and `cwd/.env`; raise ConfigError."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    dotenv = _read_dotenv(cwd / ".env")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for var in VARS:
        if var.name in environ:
            raw, source = environ[var.name], "environment"
        elif var.name in dotenv:
            raw, source = dotenv[var.name], ".env"
        else:
            values[var.attr], sources[var.attr] = var.default, "default"
            continue
        parsed = var.parse(var.name, raw)
        values[var.attr] = var.default if parsed is None else parsed
        sources[var.attr] = source if parsed is not None else "default"
    return Settings(**values, sources=sources, cwd=cwd)


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def reset_settings() -> None:
    """Forget the cached settings (tests, and after changing the environment)."""
    global _settings
    _settings = None
