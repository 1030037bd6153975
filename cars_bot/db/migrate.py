"""Run and inspect Alembic migrations programmatically (`carsctl db upgrade`, `carsctl db status`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseBehind(RuntimeError):
    """The database's schema is not the one this version needs (PostgreSQL is never migrated implicitly)."""


class UnknownRevision(ValueError):
    """`carsctl db upgrade REVISION` with a revision that no migration has."""


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _prepare_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Upgrade:
    """The revisions before and after an upgrade, and the newest there is."""

    JSON_NAMES: ClassVar[dict[str, str]] = {"previous": "from"}  # `from` is a keyword; its JSON key is kept

    previous: str | None
    to: str | None
    head: str | None


@dataclass(frozen=True)
class MigrationState:
    """The database's revision, the newest there is, and whether they are the same."""

    current: str | None
    head: str | None
    up_to_date: bool


def upgrade(url: str, revision: str = "head") -> Upgrade:
    """Bring the database at `url` to `revision`; returns the revision before and after."""
    from alembic import command
    from alembic.util import CommandError

    if not revision.strip():
        raise UnknownRevision("a revision is required (default: head)")
    _prepare_sqlite_dir(url)
    before = current_revision(url)
    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as error:
        raise UnknownRevision(f"cannot upgrade to {revision!r}: {str(error).splitlines()[0]}") from None
    return Upgrade(previous=before, to=current_revision(url), head=head_revision())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """The database's revision (None when it was never migrated). Raises on connection failure."""
    from alembic.runtime.migration import MigrationContext

    from cars_bot.db.session import get_engine

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def status(url: str) -> MigrationState:
    """Current and head revision, and whether the database is up to date."""
    current = current_revision(url)
    head = head_revision()
    return MigrationState(current=current, head=head, up_to_date=current == head)


def ensure_current(url: str) -> None:
    """Make sure the database at `url` has this version's schema before it is used.

    SQLite (the embedded default, or any file) is migrated to head on first use, under a file lock so
    that a worker's processes and a command opening it at once migrate it once. A SQLite file whose
    tables were made without Alembic (no revision, tables present) is left as it is. Any other database
    that is not at head raises DatabaseBehind: production schemas change only by `carsctl db upgrade`.
    """
    from cars_bot.db.session import normalize_database_url

    newest = newest_revision_file()
    if newest is not None and _stored_revision(url) == newest:
        return  # the common case, without importing Alembic (~0.3 s)
    if normalize_database_url(url).startswith("sqlite"):
        _ensure_sqlite(url)
        return
    current, head = current_revision(url), head_revision()
    if current != head:
        raise DatabaseBehind(f"the database schema is at revision {current or 'none'}, this version needs {head}")


def newest_revision_file() -> str | None:
    """The head revision read from the migration files' `revision`/`down_revision` lines (what Alembic's
    ScriptDirectory finds, for a linear history, without importing Alembic)."""
    import re

    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r"^revision\b[^=]*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        parent = re.search(r"^down_revision\b[^=]*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if revision:
            revisions.add(revision.group(1))
        if parent:
            parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(url: str) -> str | None:
    """The revision in `alembic_version`, None when there is none or the table is missing."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from cars_bot.db.session import get_engine

    try:
        with get_engine(url).connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def _ensure_sqlite(url: str) -> None:
    import fcntl
    import os

    from sqlalchemy import inspect

    from cars_bot.db.session import get_engine

    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:":
        return
    _prepare_sqlite_dir(url)
    head = head_revision()
    lock = os.open(Path(path).parent, os.O_RDONLY)  # the directory's lock: no lock file left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = current_revision(url)
        if current == head:
            return
        if current is None and inspect(get_engine(url)).get_table_names():
            return  # tables made by metadata.create_all (tests), not by migrations: not ours to change
        upgrade(url)
    finally:
        os.close(lock)
