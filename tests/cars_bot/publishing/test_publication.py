"""Exactly-once publishing, on a real database with a fake Telegram transport (and the outbox)."""

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
    OutboxMessage,
    Post,
    PostStatus,
    Publication,
    PublicationStatus,
    utcnow,
)
from cars_bot.errors import TransientError
from cars_bot.publishing import publication
from cars_bot.publishing.delivery import HeldByAnotherDelivery, NotSent
from cars_bot.publishing.outbox import OutboxPublisher
from cars_bot.publishing.publication import (
    ClaimOutcome,
    PublishOutcome,
    PublishResult,
    media_refs_for,
    publish_post,
)
from cars_bot.publishing.telegram import TelegramPublisher
from tests.cars_bot.publishing.fake_telegram import FakeMessage, FakeTelegramClient, photo, telegram_settings
from tests.cars_bot.publishing.post_rows import make_post


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


def publish(factory: sessionmaker[Session], publisher: Any, post_id: int, **kw: Any) -> PublishResult:
    return publish_post(post_id, session_factory=factory, publisher=publisher, **kw)


# -- the ordinary path ------------------------------------------------------------------------------


def test_publish_to_telegram_commits_everything_in_one_go(factory: sessionmaker[Session],
                                                          telegram_publisher: TelegramPublisher,
                                                          fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory, brand="<Lada & Co>")
    result = publish(factory, telegram_publisher, post_id, task_id="t-1")
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is False
    (send,) = fake_client.sends
    assert send["kind"] == "text" and send["peer"] == "@cars_news"
    assert "&lt;Lada &amp; Co&gt;" in send["payload"] and f"start=contact_{post_id}" in send["payload"]
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["published_at"] is not None
    assert s["pub"] == PublicationStatus.SENT and s["ids"] == send["ids"] == result.message_ids
    assert s["channel_published"] == 1
    # published: a later delivery does nothing
    assert publish(factory, telegram_publisher, post_id).status is PublishOutcome.ALREADY_PUBLISHED
    assert len(fake_client.sends) == 1


def test_album_post_uses_a_caption_sized_text(factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
                                              fake_client: FakeTelegramClient) -> None:
    for i in (11, 12, 13):
        fake_client.add_source("@source_cars", FakeMessage(i, "raw", media=photo(i), grouped_id=1))
    post_id = make_post(factory, media=["photo:1", "photo:2", "photo:3"], message_ids=[13, 11, 12],
                        message_id=11, summary="кожа " * 1000)
    result = publish(factory, telegram_publisher, post_id)
    (send,) = fake_client.sends
    assert send["kind"] == "album" and len(result.message_ids) == 3
    from cars_bot.publishing.post_template import visible_length

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
    assert result.status is PublishOutcome.PUBLISHED and result.publication is PublicationStatus.OUTBOX
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["pub"] == PublicationStatus.OUTBOX
    text = (tmp_path / "outbox" / f"{post_id}.html").read_text(encoding="utf-8")
    assert f"https://t.me/cars_bot?start=contact_{post_id}" in text


@pytest.mark.parametrize("status", [PostStatus.NEW, PostStatus.PROCESSING, PostStatus.REJECTED, PostStatus.FAILED])
def test_a_post_that_is_not_ready_is_a_final_outcome(factory: sessionmaker[Session],
                                                     telegram_publisher: TelegramPublisher,
                                                     fake_client: FakeTelegramClient, status: PostStatus) -> None:
    post_id = make_post(factory, status=status)
    assert publish(factory, telegram_publisher, post_id) == PublishResult(
        PublishOutcome.NOT_READY, post_id, post_status=status.value)
    assert fake_client.sends == []


def test_a_missing_post_is_a_final_outcome(factory: sessionmaker[Session],
                                           telegram_publisher: TelegramPublisher) -> None:
    assert publish(factory, telegram_publisher, 999) == PublishResult(PublishOutcome.NOT_FOUND, 999)


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
    assert publish(factory, telegram_publisher, post_id).status is PublishOutcome.PUBLISHED
    assert len(fake_client.sends) == 1


def test_a_permanent_error_is_recorded_not_retried(factory: sessionmaker[Session],
                                                   telegram_publisher: TelegramPublisher,
                                                   fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.fail_next.append(errors.ChatWriteForbiddenError(request=None))
    result = publish(factory, telegram_publisher, post_id)
    assert result.status is PublishOutcome.FAILED and "ChatWriteForbiddenError" in result.reason
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
    assert publish(factory, telegram_publisher, post_id, limiter=lambda: 0.0).status is PublishOutcome.PUBLISHED


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
    # the outcome is unknown, so the lease holds: a send still on its way lands before anyone looks
    with pytest.raises(HeldByAnotherDelivery):
        publish(factory, telegram_publisher, post_id)
    # after the lease the channel shows nothing, so it sends
    age_intent(factory, post_id)
    assert publish(factory, telegram_publisher, post_id).status is PublishOutcome.PUBLISHED
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
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert fake_client.get_calls >= 1  # it looked in the channel
    assert len(fake_client.sends) == 2  # no second send
    assert result.message_ids == fake_client.sends[1]["ids"]
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
    with pytest.raises(HeldByAnotherDelivery):  # the send may be in flight: wait for the lease
        publish(factory, telegram_publisher, post_id)
    age_intent(factory, post_id)
    result = publish(factory, telegram_publisher, post_id)
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert len(fake_client.sends) == 1


def test_crash_before_the_send_sends_once_on_redelivery(factory: sessionmaker[Session],
                                                        telegram_publisher: TelegramPublisher,
                                                        fake_client: FakeTelegramClient) -> None:
    post_id = make_post(factory)
    fake_client.send_delay = 0
    # the delivery died right after committing its intent: simulate that state
    claim = publication._claim(post_id, session_factory=factory, publisher=telegram_publisher, task_id="dead",
                               bot_username=None)
    assert claim.outcome is ClaimOutcome.CLAIMED and state(factory, post_id)["pub"] == PublicationStatus.SENDING
    age_intent(factory, post_id)
    result = publish(factory, telegram_publisher, post_id, task_id="second")
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert len(fake_client.sends) == 1 and f"contact_{post_id}" in fake_client.sends[0]["payload"]


def test_a_refused_resend_keeps_the_recorded_intent(factory: sessionmaker[Session],
                                                    telegram_publisher: TelegramPublisher,
                                                    fake_client: FakeTelegramClient) -> None:
    """A fresh claim refused by Telegram is undone (see the FloodWait test); a resumed one is only released:
    its intent may predate this delivery, so the retry verifies the channel again before sending."""
    post_id = make_post(factory)
    publication._claim(post_id, session_factory=factory, publisher=telegram_publisher, task_id="dead",
                       bot_username=None)
    age_intent(factory, post_id)
    fake_client.fail_next.append(errors.FloodWaitError(request=None, capture=30))
    with pytest.raises(NotSent) as caught:
        publish(factory, telegram_publisher, post_id, task_id="second")
    assert caught.value.retry_after == 30 and fake_client.sends == []
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHING and s["pub"] == PublicationStatus.SENDING
    assert s["error"] == "verified not sent: send refused"
    checks = fake_client.get_calls
    result = publish(factory, telegram_publisher, post_id, task_id="third")  # released: no lease to wait for
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert fake_client.get_calls > checks and len(fake_client.sends) == 1


def test_a_send_without_a_message_id_is_an_unknown_outcome(factory: sessionmaker[Session], tmp_path: Path) -> None:
    post_id = make_post(factory)
    outbox = OutboxPublisher(factory, tmp_path)
    real_send = outbox.send_post
    outbox.send_post = lambda *args, **kwargs: []  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="no message id") as caught:
        publish(factory, outbox, post_id)
    assert not isinstance(caught.value, NotSent)
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHING and s["pub"] == PublicationStatus.SENDING
    assert s["error"] == "publisher returned no message id"
    outbox.send_post = real_send  # type: ignore[method-assign]
    age_intent(factory, post_id)  # an unknown outcome keeps the lease
    result = publish(factory, outbox, post_id)
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True and len(result.message_ids) == 1


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
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    with factory() as session:
        rows = session.scalars(select(OutboxMessage.id).where(OutboxMessage.post_id == post_id)).all()
    assert rows == result.message_ids and len(rows) == 1


def test_unverifiable_channel_fails_safe_instead_of_posting_twice(factory: sessionmaker[Session],
                                                                  fake_client: FakeTelegramClient) -> None:
    bot = TelegramPublisher(telegram_settings(telegram_session_string=None, telegram_bot_token="t"),
                            client=fake_client, scan_limit=100)
    for i in range(1, 300):
        fake_client.add_source("@cars_news", FakeMessage(i, "someone else's post"))
    post_id = make_post(factory)
    publication._claim(post_id, session_factory=factory, publisher=bot, task_id="dead", bot_username=None)
    age_intent(factory, post_id)
    result = publish(factory, bot, post_id)
    assert result.status is PublishOutcome.FAILED and "could not be checked" in result.reason
    assert fake_client.sends == [] and state(factory, post_id)["post"] == PostStatus.FAILED


# -- duplicate and concurrent delivery --------------------------------------------------------------


@pytest.mark.parametrize("deliveries", [2, 4])
def test_concurrent_deliveries_send_once(factory: sessionmaker[Session], telegram_publisher: TelegramPublisher,
                                         fake_client: FakeTelegramClient, deliveries: int) -> None:
    post_id = make_post(factory)
    fake_client.send_delay = 0.2
    barrier = threading.Barrier(deliveries)
    outcomes: list[PublishOutcome | str] = []

    def deliver(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(publish(factory, telegram_publisher, post_id, task_id=f"t{n}").status)
        except TransientError as exc:
            outcomes.append(f"retry after {exc.retry_after:.0f}s")

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake_client.sends) == 1
    assert outcomes.count(PublishOutcome.PUBLISHED) == 1, outcomes
    finished = {PublishOutcome.PUBLISHED, PublishOutcome.ALREADY_PUBLISHED}
    assert all(o in finished or o.startswith("retry after") for o in outcomes), outcomes
    s = state(factory, post_id)
    assert s["post"] == PostStatus.PUBLISHED and s["channel_published"] == 1
    # the retried deliveries end as already_published
    assert publish(factory, telegram_publisher, post_id).status is PublishOutcome.ALREADY_PUBLISHED


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
    assert publish(factory, telegram_publisher, post_id).status is PublishOutcome.ALREADY_PUBLISHED
    assert len(fake_client.sends) == 1 and state(factory, post_id)["post"] == PostStatus.PUBLISHED
