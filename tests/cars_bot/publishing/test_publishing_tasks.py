"""The Celery wrappers: names, queue, limits, and a real run of each task on the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.tasks import publishing_tasks
from tests.cars_bot.publishing.post_rows import make_post, make_subscriber


@pytest.fixture
def task_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, sessionmaker[Session]]]:
    """Settings pointing at a fresh SQLite database and state directory (no Telegram: the outbox)."""
    from cars_bot.config import get_settings, reset_settings
    from cars_bot.db.models import Base
    from cars_bot.db.session import get_engine, session_factory

    url = f"sqlite:///{tmp_path / 'tasks.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CARSCTL_HOME", str(tmp_path / "home"))
    reset_settings()
    engine = get_engine(url)
    Base.metadata.create_all(engine)
    yield get_settings(), session_factory(url)
    reset_settings()
    engine.dispose()


def test_names_limits_and_routing() -> None:
    from cars_bot.celery_app import app, route_task

    publish = publishing_tasks.publish_post_task
    contact = publishing_tasks.send_contact_info_task
    assert publish.name == "cars_bot.tasks.publishing_tasks.publish_post_task"
    assert contact.name == "cars_bot.tasks.publishing_tasks.send_contact_info_task"
    assert (publish.soft_time_limit, publish.time_limit) == (60, 90)
    assert (contact.soft_time_limit, contact.time_limit) == (30, 60)
    assert publish.name in app.tasks and contact.name in app.tasks
    publish_route, contact_route = route_task(publish.name), route_task(contact.name)
    assert publish_route["queue"] == contact_route["queue"] == "publishing"
    assert contact_route["priority"] > publish_route["priority"]  # 9 is the most urgent


def test_publish_post_task_runs_the_service_on_the_outbox(task_env: tuple[Any, sessionmaker[Session]]) -> None:
    settings, factory = task_env
    post_id = make_post(factory)
    result = publishing_tasks.publish_post_task.apply(args=[post_id]).get()
    assert result["status"] == "published" and result["publication"] == "outbox"
    assert (settings.home / "outbox" / f"{post_id}.html").is_file()
    again = publishing_tasks.publish_post_task.apply(args=[post_id]).get()
    assert again["status"] == "already_published"


def test_send_contact_info_task(task_env: tuple[Any, sessionmaker[Session]]) -> None:
    settings, factory = task_env
    post_id = make_post(factory)
    make_subscriber(factory, 777)
    assert publishing_tasks.send_contact_info_task.apply(args=[777, post_id]).get()["status"] == "sent"
    assert publishing_tasks.send_contact_info_task.apply(args=[777, post_id]).get()["status"] == "already_sent"
    assert "to 777" in (settings.home / "outbox" / "outbox.log").read_text(encoding="utf-8")


@pytest.mark.redis
def test_the_telegram_publisher_gets_the_cluster_limiter(redis_url: str) -> None:
    from cars_bot.publishing.ratelimit import redis_client

    settings = SimpleNamespace(redis_url=redis_url, broker_url=redis_url, result_backend_url=redis_url,
                               publish_rate_per_minute=1)
    redis_client(redis_url).flushdb()
    limiter = publishing_tasks._limiter(settings, SimpleNamespace(kind="telegram", channel="@cars_news"))
    assert limiter() == 0.0 and limiter() > 0
    assert publishing_tasks._limiter(settings, SimpleNamespace(kind="outbox", channel="outbox")) is None


def test_rate_limit_waits_do_not_use_up_the_retries(task_env: tuple[Any, sessionmaker[Session]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _settings, factory = task_env
    post_id = make_post(factory)
    waits = [5.0] * 8 + [0.0]  # more waits than max_retries (5)
    monkeypatch.setattr(publishing_tasks, "_limiter", lambda settings, publisher: lambda: waits.pop(0))
    result = publishing_tasks.publish_post_task.apply(args=[post_id])
    assert result.get()["status"] == "published"
    assert waits == []


def test_waits_before_a_failure_leave_the_failure_its_retries(task_env: tuple[Any, sessionmaker[Session]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight rate waits, then five transient failures (max_retries), then success: published. Before,
    each wait raised celery's `retries`, so the first failure after them was already the last."""
    from cars_bot.errors import TransientError

    _settings, factory = task_env
    post_id = make_post(factory)
    waits = [5.0] * 8 + [0.0] * 6
    monkeypatch.setattr(publishing_tasks, "_limiter", lambda settings, publisher: lambda: waits.pop(0))
    monkeypatch.setattr(publishing_tasks, "retry_delay", lambda retries, exc: 0.0)
    from cars_bot.publishing import publication

    real_claim = publication._claim
    failures = [TransientError("database hiccup")] * 5

    def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(publication, "_claim", flaky_claim)
    result = publishing_tasks.publish_post_task.apply(args=[post_id])
    assert result.get()["status"] == "published"
    assert waits == [] and failures == []


def test_a_pool_process_closes_its_telegram_client_at_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.signals import worker_process_shutdown

    from cars_bot.publishing import telegram_client

    closed: list[bool] = []
    monkeypatch.setattr(telegram_client, "close_process_client", lambda: closed.append(True))
    worker_process_shutdown.send(sender=None, pid=1, exitcode=0)
    assert closed == [True]


def test_a_worker_says_at_start_that_its_session_is_invalid(settings: Any, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import base64

    from celery.signals import worker_init

    from cars_bot.config import reset_settings

    monkeypatch.setenv("TELEGRAM_SESSION_STRING", "1" + base64.urlsafe_b64encode(b"\x02" * 20).decode())
    reset_settings()
    worker_init.send(sender=None)
    assert "TELEGRAM_SESSION_STRING: invalid" in caplog.text
