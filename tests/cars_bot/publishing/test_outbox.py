"""The outbox publisher (Telegram not configured) and the choice of publisher."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.models import OutboxMessage
from cars_bot.errors import NotConfigured
from cars_bot.publishing.outbox import OutboxPublisher, publisher_for
from cars_bot.publishing.telegram import TelegramPublisher
from tests.cars_bot.publishing.fake_telegram import telegram_settings
from tests.cars_bot.publishing.post_rows import make_post

HTML = '🚗 <b>BMW &amp; Co</b>\n📞 <a href="https://t.me/bot?start=contact_1">Получить контакты</a>'


def test_send_post_writes_the_row_and_readable_files(factory: sessionmaker[Session], tmp_path: Path) -> None:
    post_id = make_post(factory)
    outbox = OutboxPublisher(factory, tmp_path / "outbox")
    refs = [{"channel": "@source_cars", "message_id": 3}]
    ids = outbox.send_post("outbox", HTML, refs, post_id=post_id)
    with factory() as session:
        (row,) = session.scalars(select(OutboxMessage)).all()
    assert ids == [row.id]
    assert (row.post_id, row.kind, row.recipient, row.text, row.media) == (post_id, "post", "outbox", HTML, refs)
    page = (tmp_path / "outbox" / f"{post_id}.html").read_text(encoding="utf-8")
    assert HTML in page and "<!doctype html>" in page and "@source_cars" in page
    log = (tmp_path / "outbox" / "outbox.log").read_text(encoding="utf-8")
    assert log.startswith(f"=== outbox #{row.id} | ") and f"| post | post {post_id} |" in log and HTML in log
    assert outbox.find_published("outbox", post_id) == [row.id]
    assert outbox.find_published("outbox", post_id + 1) == []


def test_send_message_logs_a_contact(factory: sessionmaker[Session], tmp_path: Path) -> None:
    outbox = OutboxPublisher(factory, tmp_path)
    message_id = outbox.send_message(555, "<b>Контакты</b>")
    with factory() as session:
        row = session.get(OutboxMessage, message_id)
    assert (row.kind, row.recipient) == ("contact", "555")
    assert "| contact | to 555 |" in (tmp_path / "outbox.log").read_text(encoding="utf-8")


def test_an_unwritable_outbox_rolls_the_row_back(factory: sessionmaker[Session], tmp_path: Path) -> None:
    from cars_bot.publishing.delivery import NotSent

    blocker = tmp_path / "file"
    blocker.write_text("x")
    outbox = OutboxPublisher(factory, blocker / "outbox")  # a directory inside a file: cannot exist
    with pytest.raises(NotSent):
        outbox.send_post("outbox", HTML, [], post_id=None)
    with factory() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def outbox_settings(tmp_path: Path, **values: object) -> SimpleNamespace:
    base = {"telegram_channel": None, "telegram_bot_token": None, "telegram_session_string": None,
            "telegram_api_id": None, "telegram_api_hash": None, "telegram_bot_username": "cars_bot",
            "home": tmp_path}
    base.update(values)
    return SimpleNamespace(**base)


def test_publisher_for_defaults_to_the_outbox(factory: sessionmaker[Session], tmp_path: Path) -> None:
    publisher = publisher_for(outbox_settings(tmp_path), factory)
    assert isinstance(publisher, OutboxPublisher)
    assert publisher.directory == tmp_path / "outbox" and publisher.bot_username == "cars_bot"
    # credentials without a channel: still the outbox
    assert isinstance(publisher_for(outbox_settings(tmp_path, telegram_bot_token="t"), factory), OutboxPublisher)


def test_publisher_for_picks_telegram_when_configured(factory: sessionmaker[Session]) -> None:
    assert isinstance(publisher_for(telegram_settings(), factory), TelegramPublisher)
    bot = telegram_settings(telegram_session_string=None, telegram_bot_token="123:abc")
    publisher = publisher_for(bot, factory)
    assert isinstance(publisher, TelegramPublisher) and publisher.is_bot


def test_publisher_for_refuses_a_channel_without_api_credentials(factory: sessionmaker[Session]) -> None:
    with pytest.raises(NotConfigured, match="TELEGRAM_API_ID"):
        publisher_for(telegram_settings(telegram_api_id=None), factory)


def test_publisher_for_real_settings(settings: object, factory: sessionmaker[Session]) -> None:
    publisher = publisher_for(settings, factory)
    assert isinstance(publisher, OutboxPublisher)
    assert publisher.directory == settings.home / "outbox"  # type: ignore[attr-defined]
