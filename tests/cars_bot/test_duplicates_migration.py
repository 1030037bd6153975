"""Migration 0005: posts.duplicate_of and the status `duplicate`, with the CHECK constraint recreated
(on SQLite through batch mode, on PostgreSQL in place), and back."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from cars_bot.db.migrate import alembic_config, current_revision, upgrade
from cars_bot.db.session import get_engine

pytestmark = pytest.mark.db


def _insert(engine, status: str) -> None:
    with engine.begin() as connection:
        channel = connection.execute(text(
            "INSERT INTO channels (username, is_active, total_posts, published_posts, created_at, updated_at) "
            "VALUES (:u, true, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"), {"u": f"ch_{status}"}
        ).scalar_one()
        connection.execute(text(
            "INSERT INTO posts (channel_id, message_id, text, media, message_ids, status, attempts, found_at, "
            "created_at, updated_at) VALUES (:c, 1, '', '[]', '[]', :s, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
            "CURRENT_TIMESTAMP)"), {"c": channel, "s": status})


def _round_trip(url: str) -> None:
    from alembic import command

    upgrade(url)
    engine = get_engine(url)
    assert current_revision(url) == "0005"
    assert "duplicate_of" in {c["name"] for c in inspect(engine).get_columns("posts")}
    checks = [c for c in inspect(engine).get_check_constraints("posts") if c["name"] == "ck_posts_post_status"]
    assert len(checks) == 1 and "duplicate" in checks[0]["sqltext"]
    _insert(engine, "duplicate")
    with pytest.raises(IntegrityError):
        _insert(engine, "bogus")  # the constraint is still enforced, not just dropped

    command.downgrade(alembic_config(url), "0004")
    engine = get_engine(url)
    assert "duplicate_of" not in {c["name"] for c in inspect(engine).get_columns("posts")}
    with engine.connect() as connection:  # the duplicate became a rejected post
        assert connection.execute(text("SELECT status FROM posts")).scalars().all() == ["rejected"]
    with pytest.raises(IntegrityError):
        _insert(engine, "duplicate")
    upgrade(url)
    assert current_revision(url) == "0005"


def test_upgrade_and_downgrade_on_sqlite(tmp_path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'm.sqlite3'}")


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="needs TEST_DATABASE_URL=postgresql://... (CI)")
def test_upgrade_and_downgrade_on_postgresql(migrated_database: str) -> None:
    from sqlalchemy import delete

    from cars_bot.db.models import Base

    with get_engine(migrated_database).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    _round_trip(migrated_database)
    with get_engine(migrated_database).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
