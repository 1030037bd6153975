"""Seller contacts for subscribers, once per (user, post), on a real database with a fake Telegram transport."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from telethon import errors

from cars_bot.db.models import ContactRequest, User, utcnow
from cars_bot.errors import TransientError
from cars_bot.publishing.contacts import ContactOutcome, ContactResult, send_contact_info
from cars_bot.publishing.telegram import TelegramPublisher
from tests.cars_bot.publishing.fake_telegram import FakeTelegramClient
from tests.cars_bot.publishing.post_rows import add_seller_contact, make_post, make_subscriber


def contact(factory: sessionmaker[Session], publisher: Any, user: int, post_id: int) -> ContactResult:
    return send_contact_info(user, post_id, session_factory=factory, publisher=publisher)


def test_contact_info_is_sent_once_per_user_and_post(factory: sessionmaker[Session],
                                                     telegram_publisher: TelegramPublisher,
                                                     fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory, message_id=77)
    add_seller_contact(factory, post_id, phone="+7 999 <123>", telegram_username="seller_two")
    user_pk = make_subscriber(factory, 555)
    result = contact(factory, telegram_publisher, 555, post_id)
    assert result.status is ContactOutcome.SENT
    (send,) = fake_client.sends
    assert send["peer"] == 555
    assert "+7 999 &lt;123&gt;" in send["payload"] and "@seller_two" in send["payload"]
    assert 'href="https://t.me/source_cars/77"' in send["payload"]
    again = contact(factory, telegram_publisher, 555, post_id)
    assert again == ContactResult(ContactOutcome.ALREADY_SENT, 555, post_id, message_id=result.message_id)
    assert len(fake_client.sends) == 1
    with factory() as session:
        assert session.get(User, user_pk).contact_requests_count == 1
        (request,) = session.scalars(select(ContactRequest)).all()
        assert request.message_id == result.message_id


def test_contact_falls_back_to_the_channels_seller(factory: sessionmaker[Session],
                                                   telegram_publisher: TelegramPublisher,
                                                   fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    make_subscriber(factory, 556)
    assert contact(factory, telegram_publisher, 556, post_id).status is ContactOutcome.SENT
    assert "+79990001122" in fake_client.sends[0]["payload"] and "@seller_one" in fake_client.sends[0]["payload"]


@pytest.mark.parametrize(
    ("active", "ends_in"),
    [(False, timedelta(days=30)), (True, timedelta(seconds=-1))],
    ids=["inactive", "expired"],
)
def test_contact_is_refused_without_an_active_subscription(factory: sessionmaker[Session],
                                                           telegram_publisher: TelegramPublisher,
                                                           fake_client: FakeTelegramClient,
                                                           active: bool, ends_in: timedelta) -> None:
    post_id = make_post(factory)
    make_subscriber(factory, 557, active=active, ends_in=ends_in)
    assert contact(factory, telegram_publisher, 557, post_id).status is ContactOutcome.NO_SUBSCRIPTION
    assert contact(factory, telegram_publisher, 999, post_id).status is ContactOutcome.UNKNOWN_USER
    assert fake_client.sends == []
    with factory() as session:
        assert session.scalars(select(ContactRequest)).all() == []


def test_concurrent_contact_requests_send_once(factory: sessionmaker[Session],
                                               telegram_publisher: TelegramPublisher,
                                               fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    make_subscriber(factory, 558)
    fake_client.send_delay = 0.1
    barrier = threading.Barrier(3)
    outcomes: list[ContactOutcome | str] = []

    def ask() -> None:
        barrier.wait()
        try:
            outcomes.append(contact(factory, telegram_publisher, 558, post_id).status)
        except TransientError:
            outcomes.append("retry")

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake_client.sends) == 1
    assert outcomes.count(ContactOutcome.SENT) == 1
    assert set(outcomes) <= {ContactOutcome.SENT, ContactOutcome.ALREADY_SENT, "retry"}
    assert contact(factory, telegram_publisher, 558, post_id).status is ContactOutcome.ALREADY_SENT


def test_a_contact_request_left_by_a_dead_delivery_is_sent_after_its_lease(
        factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    user_pk = make_subscriber(factory, 560)
    with factory() as session, session.begin():
        session.add(ContactRequest(user_id=user_pk, post_id=post_id, requested_at=utcnow()))
    with pytest.raises(TransientError) as caught:
        contact(factory, telegram_publisher, 560, post_id)
    assert 0 < caught.value.retry_after <= 90 and fake_client.sends == []
    with factory() as session, session.begin():
        session.execute(update(ContactRequest).values(requested_at=utcnow() - timedelta(minutes=5)))
    assert contact(factory, telegram_publisher, 560, post_id).status is ContactOutcome.SENT
    assert len(fake_client.sends) == 1


def test_a_failed_contact_send_can_be_asked_again(factory: sessionmaker[Session],
                                                  telegram_publisher: TelegramPublisher,
                                                  fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    make_subscriber(factory, 559)
    fake_client.fail_next.append(errors.FloodWaitError(request=None, capture=5))
    with pytest.raises(TransientError):
        contact(factory, telegram_publisher, 559, post_id)
    fake_client.fail_next.append(errors.UserIsBlockedError(request=None))
    assert contact(factory, telegram_publisher, 559, post_id).status is ContactOutcome.FAILED
    assert contact(factory, telegram_publisher, 559, post_id).status is ContactOutcome.SENT
