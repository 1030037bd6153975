"""Engines and sessions: ordinary synchronous SQLAlchemy, one engine per process and URL.

Tasks use `session_scope()`; nothing here runs an event loop (the prior system's `asyncio.run` in every
task is gone). The engine is rebuilt after a fork, so prefork children never share a connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_engines: dict[tuple[str, int], Engine] = {}
_schema_checked: set[str] = set()


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for `postgresql://` URLs (SQLAlchemy would pick psycopg2 otherwise)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins (see _begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the worker's processes read while one writes; busy_timeout makes writers wait
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Take the write lock when the transaction starts. A deferred transaction that read first and
    # then writes cannot wait for a concurrent writer: SQLite fails it at once with "database is
    # locked" (busy_timeout does not apply to that upgrade). IMMEDIATE makes it wait its turn instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (0644 under umask 022): its WAL and SHM files take the
    database file's mode. An existing file (and its WAL/SHM) of ours open to others is tightened."""
    from sqlalchemy.engine import make_url

    from cars_bot.private_files import PRIVATE_FILE, private_dir, private_file, tighten

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent, tighten_existing=False)
    private_file(path)
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        tighten(companion, PRIVATE_FILE)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the configured DATABASE_URL)."""
    if url is None:
        from cars_bot.config import get_settings

        url = get_settings().database_url
    url = normalize_database_url(url)
    key = (url, os.getpid())
    engine = _engines.get(key)
    if engine is None:
        if url.startswith("sqlite"):
            _private_sqlite_file(url)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _begin_immediate)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        _engines[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every engine of this process (tests, and before a fork)."""
    for engine in list(_engines.values()):
        engine.dispose()
    _engines.clear()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Sessions on the database at `url`, whose schema is checked (SQLite: migrated) on first use."""
    engine = get_engine(url)
    key = engine.url.render_as_string(hide_password=False)
    if key not in _schema_checked:
        from cars_bot.db.migrate import ensure_current

        ensure_current(key)
        _schema_checked.add(key)
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
