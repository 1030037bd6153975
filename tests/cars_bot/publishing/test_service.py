"""Exactly-once publishing and contact delivery, on a real database with a fake Telegram transport."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from telethon import errors

from cars_bot.db.models import (
    Channel,
    ContactRequest,
    OutboxMessage,
    Post,
    PostStatus,
    Publication,
    PublicationStatus,
    User,
    utcnow,
)
from cars_bot.errors import TransientError
from cars_bot.publishing.outbox import OutboxPublisher
from cars_bot.publishing.service import NotSent, media_refs_for, publish_post, send_contact_info
from cars_bot.publishing.telegram import TelegramPublisher
from tests.cars_bot.publishing.conftest import (
    FakeMessage,
    FakeTelegramClient,
    add_seller_contact,
    make_post,
    make_subscriber,
    photo,
)


def state(factory: sessionmaker[Session], post_id: int) -> dict[str, Any]:
    with factory() as session:
        post = session.get(Post, post_id)
        pub = session.scalar(select(Publication).where(Publication.post_id == post_id))
        channel = session.get(Channel, post.channel_id)
        return {
            "post": post.status, "reason": post.status_reason, "published_at": post.published_at,
            "pub": pub.status if pub else None, "ids": list(pub.message_ids) if pub else None,
            "error": pub.error if pub else None, "channel_published": channel.published_posts,
        }


def age_intent(factory: sessionmaker[Session], post_id: int, seconds: float = 600) -> None:
    """Make the SENDING intent look older than the lease (the delivery that wrote it is dead)."""
    with factory() as session, session.begin():
        session.execute(update(Publication).where(Publication.post_id == post_id)
                        .values(updated_at=utcnow() - timedelta(seconds=seconds)))


def publish(factory: sessionmaker[Session], publisher: Any, post_id: int, **kw: Any) -> dict[str, Any]:
    return publish_post(post_id, session_factory=factory, publisher=publisher, **kw)


# -- the ordinary path ------------------------------------------------------------------------------


def test_publish_to_telegram_commits_everything_in_one_go(factory: sessionmaker[Session],
                                                          telegram_publisher: TelegramPublisher,
                                                          fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory, brand="<Lada & Co>")
    result = publish(factory, telegram_publisher, post_id, task_id="t-1")
    assert result["status"] == "published" and result["recovered"] is False
    (send,) = fake_client.sends
    assert send["kind"] == "text" and send["peer"] == "@cars_news"
    assert "&lt;Lada &amp; Co&gt;" in send["payload"] and f"start=contact_{post_id}" in send["payload"]
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["published_at"] is not None
    assert s["pub"] == PublicationStatus.SENT and s["ids"] == send["ids"] == result["message_ids"]
    assert s["channel_published"] == 1
    # published: a later delivery does nothing
    assert publish(factory, telegram_publisher, post_id)["status"] == "already_published"
    assert len(fake_client.sends) == 1


def test_album_post_uses_a_caption_sized_text(factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
                                              fake_client: FakeTelegramClient) -> None:
    for i in (11, 12, 13):
        fake_client.add_source("@source_cars", FakeMessage(i, "raw", media=photo(i), grouped_id=1))
    post_id = make_post(factory, media=["photo:1", "photo:2", "photo:3"], message_ids=[13, 11, 12],
                        message_id=11, summary="кожа " * 1000)
    result = publish(factory, telegram_publisher, post_id)
    (send,) = fake_client.sends
    assert send["kind"] == "album" and len(result["message_ids"]) == 3
    from cars_bot.publishing.render import visible_length

    assert visible_length(send["payload"]) <= 1024


def test_text_only_post_has_no_media_even_with_message_ids(factory: sessionmaker[Session]) -> None:
    post_id = make_post(factory, message_ids=[1])
    with factory() as session:
        post = session.get(Post, post_id)
        assert media_refs_for(post) == []
        post.media = [{"message_id": 9, "type": "photo"}] + [{"message_id": i} for i in range(20, 40)]
        refs = media_refs_for(post)
    assert len(refs) == 10 and refs[0] == {"channel": "@source_cars", "message_id": 9}


def test_publish_to_the_outbox(factory: sessionmaker[Session], tmp_path: Path) -> None:
    post_id = make_post(factory)
    outbox = OutboxPublisher(factory, tmp_path / "outbox", bot_username="cars_bot")
    result = publish(factory, outbox, post_id)
    assert result["status"] == "published" and result["publication"] == "outbox"
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["pub"] == PublicationStatus.OUTBOX
    text = (tmp_path / "outbox" / f"{post_id}.html").read_text(encoding="utf-8")
    assert f"https://t.me/cars_bot?start=contact_{post_id}" in text


@pytest.mark.parametrize("status", [PostStatus.NEW, PostStatus.PROCESSING, PostStatus.REJECTED, PostStatus.FAILED])
def test_a_post_that_is_not_ready_is_a_final_outcome(factory: sessionmaker[Session],
                                                     telegram_publisher: TelegramPublisher,
                                                     fake_client: FakeTelegramClient, status: PostStatus) -> None:
    post_id = make_post(factory, status=status)
    assert publish(factory, telegram_publisher, post_id) == {
        "status": "not_ready", "post_id": post_id, "post_status": status.value}
    assert fake_client.sends == []


def test_a_missing_post_is_a_final_outcome(factory: sessionmaker[Session],
                                           telegram_publisher: TelegramPublisher) -> None:
    assert publish(factory, telegram_publisher, 999) == {"status": "not_found", "post_id": 999}


# -- errors -----------------------------------------------------------------------------------------


def test_flood_wait_retries_after_telegrams_delay_and_releases_the_claim(
        factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.fail_next.append(errors.FloodWaitError(request=None, capture=30))
    with pytest.raises(TransientError) as caught:
        publish(factory, telegram_publisher, post_id)
    assert caught.value.retry_after == 30
    s = state(factory, post_id)
    assert s["post"] == PostStatus.READY and s["pub"] is None  # nothing was sent: start afresh
    # the retry publishes
    assert publish(factory, telegram_publisher, post_id)["status"] == "published"
    assert len(fake_client.sends) == 1


def test_a_permanent_error_is_recorded_not_retried(factory: sessionmaker[Session],
                                                   telegram_publisher: TelegramPublisher,
                                                   fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.fail_next.append(errors.ChatWriteForbiddenError(request=None))
    result = publish(factory, telegram_publisher, post_id)
    assert result["status"] == "failed" and "ChatWriteForbiddenError" in result["reason"]
    s = state(factory, post_id)
    assert s["post"] == PostStatus.FAILED and "ChatWriteForbiddenError" in s["reason"]
    assert s["pub"] == PublicationStatus.FAILED and "ChatWriteForbiddenError" in s["error"]
    assert s["channel_published"] == 0


def test_the_rate_limit_delays_the_task_without_claiming(factory: sessionmaker[Session],
                                                         telegram_publisher: TelegramPublisher,
                                                         fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    with pytest.raises(TransientError) as caught:
        publish(factory, telegram_publisher, post_id, limiter=lambda: 12.5)
    assert caught.value.retry_after == 12.5
    assert state(factory, post_id)["post"] == PostStatus.READY and fake_client.sends == []
    assert publish(factory, telegram_publisher, post_id, limiter=lambda: 0.0)["status"] == "published"


def test_an_ambiguous_failure_releases_the_intent_and_the_retry_verifies(
        factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.fail_next.append(ConnectionError("reset during the send"))
    with pytest.raises(TransientError) as caught:
        publish(factory, telegram_publisher, post_id)
    assert not isinstance(caught.value, NotSent)
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHING and s["pub"] == PublicationStatus.SENDING
    assert "outcome unknown" in s["error"]
    # released: the retry does not wait for the lease; the channel shows nothing, so it sends
    assert publish(factory, telegram_publisher, post_id)["status"] == "published"
    assert len(fake_client.sends) == 1


# -- exactly once across a crash --------------------------------------------------------------------


def test_crash_between_send_and_commit_does_not_post_twice(factory: sessionmaker[Session],
                                                           telegram_publisher: TelegramPublisher,
                                                           fake_client: FakeTelegramClient) -> None:
    make_post(factory, message_id=50)  # an earlier post, published: gives the id floor
    earlier = make_post(factory, message_id=51)
    publish(factory, telegram_publisher, earlier)
    post_id = make_post(factory, message_id=52)

    def crash() -> None:
        factory.crash_next_commit = True  # type: ignore[attr-defined]

    fake_client.after_send = crash
    with pytest.raises(RuntimeError, match="worker killed"):
        publish(factory, telegram_publisher, post_id, task_id="first")
    fake_client.after_send = None
    assert len(fake_client.sends) == 2
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHING and s["pub"] == PublicationStatus.SENDING and s["error"] is None

    # redelivered at once: the intent may belong to a live delivery, so wait for the lease
    with pytest.raises(TransientError) as caught:
        publish(factory, telegram_publisher, post_id, task_id="first")
    assert 0 < caught.value.retry_after <= 120
    assert len(fake_client.sends) == 2

    # redelivered after the lease: finds its own message in the channel and only commits
    age_intent(factory, post_id)
    result = publish(factory, telegram_publisher, post_id, task_id="first")
    assert result["status"] == "published" and result["recovered"] is True
    assert fake_client.get_calls >= 1  # it looked in the channel
    assert len(fake_client.sends) == 2  # no second send
    assert result["message_ids"] == fake_client.sends[1]["ids"]
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["pub"] == PublicationStatus.SENT
    assert s["ids"] == fake_client.sends[1]["ids"] and s["channel_published"] == 2


def test_a_stuck_post_set_back_to_ready_by_hand_is_verified_not_resent(
        factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)

    def crash() -> None:
        factory.crash_next_commit = True  # type: ignore[attr-defined]

    fake_client.after_send = crash
    with pytest.raises(RuntimeError):
        publish(factory, telegram_publisher, post_id)
    fake_client.after_send = None
    with factory() as session, session.begin():  # an operator "unsticks" the post
        session.execute(update(Post).where(Post.id == post_id).values(status=PostStatus.READY))
    result = publish(factory, telegram_publisher, post_id)
    assert result["status"] == "published" and result["recovered"] is True
    assert len(fake_client.sends) == 1


def test_crash_before_the_send_sends_once_on_redelivery(factory: sessionmaker[Session],
                                                        telegram_publisher: TelegramPublisher,
                                                        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.send_delay = 0
    # the delivery died right after committing its intent: simulate that state
    from cars_bot.publishing import service

    claim = service._claim(post_id, session_factory=factory, publisher=telegram_publisher, task_id="dead",
                           bot_username=None)
    assert claim is not None and state(factory, post_id)["pub"] == PublicationStatus.SENDING
    age_intent(factory, post_id)
    result = publish(factory, telegram_publisher, post_id, task_id="second")
    assert result["status"] == "published" and result["recovered"] is True
    assert len(fake_client.sends) == 1 and f"contact_{post_id}" in fake_client.sends[0]["payload"]


def test_crash_with_the_outbox_does_not_store_twice(factory: sessionmaker[Session], tmp_path: Path) -> None:
    post_id = make_post(factory)
    outbox = OutboxPublisher(factory, tmp_path)
    original = outbox._store

    def store_then_crash(*args: Any) -> int:
        row_id = original(*args)
        factory.crash_next_commit = True  # type: ignore[attr-defined]
        return row_id

    outbox._store = store_then_crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        publish(factory, outbox, post_id)
    outbox._store = original  # type: ignore[method-assign]
    age_intent(factory, post_id)
    result = publish(factory, outbox, post_id)
    assert result["status"] == "published" and result["recovered"] is True
    with factory() as session:
        rows = session.scalars(select(OutboxMessage.id).where(OutboxMessage.post_id == post_id)).all()
    assert rows == result["message_ids"] and len(rows) == 1


def test_unverifiable_channel_fails_safe_instead_of_posting_twice(factory: sessionmaker[Session],
                                                                  fake_client: FakeTelegramClient) -> None:
    from tests.cars_bot.publishing.conftest import telegram_settings

    bot = TelegramPublisher(telegram_settings(telegram_session_string=None, telegram_bot_token="t"),
                            client=fake_client, scan_limit=100)
    for i in range(1, 300):
        fake_client.add_source("@cars_news", FakeMessage(i, "someone else's post"))
    post_id = make_post(factory)
    from cars_bot.publishing import service

    service._claim(post_id, session_factory=factory, publisher=bot, task_id="dead", bot_username=None)
    age_intent(factory, post_id)
    result = publish(factory, bot, post_id)
    assert result["status"] == "failed" and "could not be checked" in result["reason"]
    assert fake_client.sends == [] and state(factory, post_id)["post"] == PostStatus.FAILED


# -- duplicate and concurrent delivery --------------------------------------------------------------


@pytest.mark.parametrize("deliveries", [2, 4])
def test_concurrent_deliveries_send_once(factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
                                         fake_client: FakeTelegramClient, deliveries: int) -> None:
    post_id = make_post(factory)
    fake_client.send_delay = 0.2
    barrier = threading.Barrier(deliveries)
    outcomes: list[Any] = []

    def deliver(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(publish(factory, telegram_publisher, post_id, task_id=f"t{n}")["status"])
        except TransientError as exc:
            outcomes.append(f"retry after {exc.retry_after:.0f}s")

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake_client.sends) == 1
    assert outcomes.count("published") == 1, outcomes
    assert all(o == "published" or o == "already_published" or o.startswith("retry after") for o in outcomes)
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["channel_published"] == 1
    # the retried deliveries end as already_published
    assert publish(factory, telegram_publisher, post_id)["status"] == "already_published"


def test_concurrent_deliveries_to_the_outbox_store_once(factory: sessionmaker[Session], tmp_path: Path) -> None:
    post_id = make_post(factory)
    outbox = OutboxPublisher(factory, tmp_path)
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        try:
            publish(factory, outbox, post_id)
        except TransientError:
            pass

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with factory() as session:
        assert len(session.scalars(select(OutboxMessage)).all()) == 1
    assert state(factory, post_id)["post"] == PostStatus.PUBLISHED


def test_a_post_set_back_to_ready_after_publishing_is_not_reposted(factory: sessionmaker[Session],
                                                                   telegram_publisher: TelegramPublisher,
                                                                   fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    publish(factory, telegram_publisher, post_id)
    with factory() as session, session.begin():
        session.execute(update(Post).where(Post.id == post_id).values(status=PostStatus.READY))
    assert publish(factory, telegram_publisher, post_id)["status"] == "already_published"
    assert len(fake_client.sends) == 1 and state(factory, post_id)["post"] == PostStatus.PUBLISHED


# -- contacts ---------------------------------------------------------------------------------------


def contact(factory: sessionmaker[Session], publisher: Any, user: int, post_id: int) -> dict[str, Any]:
    return send_contact_info(user, post_id, session_factory=factory, publisher=publisher)


def test_contact_info_is_sent_once_per_user_and_post(factory: sessionmaker[Session],
                                                     telegram_publisher: TelegramPublisher,
                                                     fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory, message_id=77)
    add_seller_contact(factory, post_id, phone="+7 999 <123>", telegram_username="seller_two")
    user_pk = make_subscriber(factory, 555)
    result = contact(factory, telegram_publisher, 555, post_id)
    assert result["status"] == "sent"
    (send,) = fake_client.sends
    assert send["peer"] == 555
    assert "+7 999 &lt;123&gt;" in send["payload"] and "@seller_two" in send["payload"]
    assert 'href="https://t.me/source_cars/77"' in send["payload"]
    again = contact(factory, telegram_publisher, 555, post_id)
    assert again == {"status": "already_sent", "message_id": result["message_id"], "user_id": 555,
                     "post_id": post_id}
    assert len(fake_client.sends) == 1
    with factory() as session:
        assert session.get(User, user_pk).contact_requests_count == 1
        (request,) = session.scalars(select(ContactRequest)).all()
        assert request.message_id == result["message_id"]


def test_contact_falls_back_to_the_channels_seller(factory: sessionmaker[Session],
                                                   telegram_publisher: TelegramPublisher,
                                                   fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    make_subscriber(factory, 556)
    assert contact(factory, telegram_publisher, 556, post_id)["status"] == "sent"
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
    assert contact(factory, telegram_publisher, 557, post_id)["status"] == "no_subscription"
    assert contact(factory, telegram_publisher, 999, post_id)["status"] == "unknown_user"
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
    outcomes: list[str] = []

    def ask() -> None:
        barrier.wait()
        try:
            outcomes.append(contact(factory, telegram_publisher, 558, post_id)["status"])
        except TransientError:
            outcomes.append("retry")

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake_client.sends) == 1
    assert outcomes.count("sent") == 1 and set(outcomes) <= {"sent", "already_sent", "retry"}
    assert contact(factory, telegram_publisher, 558, post_id)["status"] == "already_sent"


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
    assert contact(factory, telegram_publisher, 560, post_id)["status"] == "sent"
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
    assert contact(factory, telegram_publisher, 559, post_id)["status"] == "failed"
    assert contact(factory, telegram_publisher, 559, post_id)["status"] == "sent"
