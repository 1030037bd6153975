"""Run and inspect Alembic migrations programmatically (`carsctl db upgrade`, `carsctl db status`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

MIGRATIONS = Path(__file__).with_name("migrations")


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

    _prepare_sqlite_dir(url)
    before = current_revision(url)
    command.upgrade(alembic_config(url), revision)
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
