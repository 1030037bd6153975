"""Issue 15 item 9: the state directory is 0700 and what it holds 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are created world-readable unless the code says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_sqlite_database_and_its_wal_are_private(tmp_path: Path, umask_022: None) -> None:
    from sqlalchemy import text

    from cars_bot.db.session import dispose_engines, get_engine

    path = tmp_path / "state" / "cars_bot.sqlite3"
    try:
        with get_engine(f"sqlite:///{path}").begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: _mode(p) for p in (path, wal, shm)} == {p.name: 0o600 for p in (path, wal, shm)}
        assert _mode(path.parent) == 0o700
    finally:
        dispose_engines()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    from cars_bot.db.session import dispose_engines, get_engine

    path = tmp_path / "old.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    try:
        get_engine(f"sqlite:///{path}")
        assert _mode(path) == 0o600
    finally:
        dispose_engines()


def test_outbox_files_are_private(tmp_path: Path, umask_022: None) -> None:
    from cars_bot.publishing.outbox import LOG_NAME, OutboxPublisher

    outbox = OutboxPublisher(session_factory=lambda: None, directory=tmp_path / "outbox")  # type: ignore[arg-type]
    outbox._write_files("post", 1, "@channel", "<b>Toyota</b>", [], 7, datetime.now(UTC))
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["7.html", LOG_NAME]
    assert all(_mode(f) == 0o600 for f in files) and _mode(tmp_path / "outbox") == 0o700


def test_failed_task_fallback_file_is_private(tmp_path: Path, umask_022: None) -> None:
    from cars_bot.failed_tasks import _append_fallback

    _append_fallback(tmp_path / "logs", {"task_id": "x"})
    assert _mode(tmp_path / "logs" / "failed_tasks.jsonl") == 0o600


def test_spawned_processes_log_and_create_files_privately(tmp_path: Path, umask_022: None) -> None:
    from carsctl.process.supervise import spawn_detached

    created = tmp_path / "made-by-the-child"
    spawned = spawn_detached([sys.executable, "-c", f"open({str(created)!r}, 'w').write('x')"],
                             tmp_path / "logs" / "node.log")
    assert spawned.process.wait(timeout=30) == 0
    assert _mode(tmp_path / "logs" / "node.log") == 0o600 and _mode(created) == 0o600


@pytest.mark.slow
def test_embedded_redis_state_directory_and_append_only_file_are_private(short_home: Path, umask_022: None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cars_bot.config import load_settings
    from carsctl.process import embedded_redis

    home = short_home / "st"
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs")}, cwd=short_home)
    embedded_redis.start(settings)
    try:
        import redis

        redis.Redis(unix_socket_path=str(settings.embedded_socket)).rpush("ai_processing", "task arguments")
    finally:
        embedded_redis.stop(settings)
    assert _mode(home) == 0o700
    data = [p for p in home.rglob("*") if p.is_file()]
    assert any("appendonly" in p.name for p in data), data
    assert {str(p): _mode(p) for p in data} == {str(p): 0o600 for p in data}


def test_systemd_units_set_a_private_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cars_bot.config import load_settings
    from carsctl.lifecycle.node_specs import worker_spec
    from carsctl.lifecycle.systemd_units import systemd_units

    monkeypatch.chdir(tmp_path)
    settings = load_settings({"CARSCTL_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    units = systemd_units(settings, [worker_spec(settings, "worker")])
    services = {name: text for name, text in units.items() if name.endswith(".service")}
    assert services and all("\nUMask=0077\n" in text for text in services.values())


def test_a_dotenv_readable_by_others_is_warned_about(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cars_bot.config import load_settings
    from carsctl.health.checkup import Level, check_private_files
    from tests.carsctl.cli import invoke

    monkeypatch.chdir(tmp_path)
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPENAI_API_KEY=sk-test-not-a-real-key-000000\n")
    dotenv.chmod(0o644)
    shown = invoke("config", "show")
    assert shown.exit_code == 0 and f"{dotenv} is readable by other users" in shown.stderr
    [finding] = check_private_files(load_settings(cwd=tmp_path))
    assert finding.level is Level.WARNING and finding.fix == f"chmod 600 {dotenv}"

    dotenv.chmod(0o600)
    assert "readable by other users" not in invoke("config", "show").stderr
    assert [f.level for f in check_private_files(load_settings(cwd=tmp_path))] == [Level.OK]


def test_a_read_command_that_creates_the_state_directory_creates_it_private(settings, tmp_path: Path,
                                                                            umask_022: None) -> None:
    """`carsctl doctor` on a fresh directory made CARSCTL_HOME 0755 through the completion cache."""
    from types import SimpleNamespace

    from carsctl.generated.completion_cache import remember_app

    remember_app(settings, SimpleNamespace(tasks={"cars_bot.tasks.ai_tasks.process_post_task": object()}))
    assert settings.home.is_dir() and _mode(settings.home) == 0o700
