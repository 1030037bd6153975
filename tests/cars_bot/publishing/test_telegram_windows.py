"""The duplicate-post windows of the Telethon path (issue 11), each against the telethon-shaped fake:
the clocks of two workers, a cancelled send telethon still delivers, a bot without a floor, missing
peers, a -100 id with a user session, a malformed session, bot logins, a media refusal."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telethon import errors

from cars_bot.db.models import PostStatus, Publication, PublicationStatus
from cars_bot.errors import NotConfigured, PermanentError, TransientError
from cars_bot.publishing import publication, telegram, telegram_client
from cars_bot.publishing.delivery import HeldByAnotherDelivery, stored_peers
from cars_bot.publishing.publication import PublishOutcome, publish_post
from cars_bot.publishing.telegram import TelegramPublisher, _ProcessRuntime, validate_session_string
from tests.cars_bot.publishing.fake_telegram import (
    FakeMessage,
    FakeTelegramClient,
    FakeTelegramServer,
    photo,
    telegram_settings,
)
from tests.cars_bot.publishing.post_rows import make_post
from tests.cars_bot.publishing.test_publication import age_intent, state

BOT = {"telegram_session_string": None, "telegram_bot_token": "123:abc"}


def worker(server: FakeTelegramServer, *, bot: bool = False, call_timeout: float = 5.0,
           **settings: Any) -> tuple[TelegramPublisher, FakeTelegramClient]:
    """One worker process: its own client connection to the shared server, on its own event loop."""
    client = FakeTelegramClient(server)
    runtime = _ProcessRuntime(loop=asyncio.new_event_loop())
    publisher = TelegramPublisher(telegram_settings(**(BOT if bot else {}), **settings), client=client,
                                  call_timeout=call_timeout, runtime=runtime)
    return publisher, client


@pytest.fixture
def skewed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], None]]:
    """Set this thread's wall clock `minutes` off (what a worker's `utcnow()` reads); the fixed code
    must not read it for any decision."""
    offsets = threading.local()
    real = datetime.now

    def skewed_utcnow() -> datetime:
        return real(UTC) + timedelta(minutes=getattr(offsets, "minutes", 0.0))

    monkeypatch.setattr(publication, "utcnow", skewed_utcnow, raising=False)
    yield lambda minutes: setattr(offsets, "minutes", minutes)


def copies(server: FakeTelegramServer, post_id: int) -> int:
    """How many channel messages carry post `post_id`'s deep link."""
    return len(server.messages_mentioning(f"start=contact_{post_id}"))


def crash_after_next_send(factory: sessionmaker[Session], client: FakeTelegramClient) -> None:
    def crash() -> None:
        factory.crash_next_commit = True  # type: ignore[attr-defined]
        client.after_send = None

    client.after_send = crash


# -- 1. one clock ------------------------------------------------------------------------------------


def test_a_worker_whose_clock_is_behind_does_not_hide_an_earlier_send(
        factory: sessionmaker[Session], skewed_clock: Callable[[float], None]) -> None:
    server = FakeTelegramServer()
    a, a_client = worker(server, bot=True)
    b, _ = worker(server, bot=True)
    first = make_post(factory, message_id=1)
    assert publish_post(first, session_factory=factory, publisher=a).status is PublishOutcome.PUBLISHED
    lost = make_post(factory, message_id=2)
    crash_after_next_send(factory, a_client)  # A sends post `lost`, then dies before its commit
    with pytest.raises(RuntimeError, match="worker killed"):
        publish_post(lost, session_factory=factory, publisher=a)
    skewed_clock(-5)  # B's clock is five minutes behind: its confirmed send looks older than A's intent
    later = make_post(factory, message_id=3)
    assert publish_post(later, session_factory=factory, publisher=b).status is PublishOutcome.PUBLISHED
    age_intent(factory, lost)
    result = publish_post(lost, session_factory=factory, publisher=b)
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert copies(server, lost) == 1


def test_a_worker_whose_clock_is_ahead_does_not_take_over_a_live_send(
        factory: sessionmaker[Session], skewed_clock: Callable[[float], None]) -> None:
    server = FakeTelegramServer()
    b, _ = worker(server)
    post_id = make_post(factory)
    # A committed its intent a moment ago and is sending
    publication._claim(post_id, session_factory=factory, publisher=b, task_id="a", bot_username=None)
    skewed_clock(+5)  # B's clock is five minutes ahead: by it, A's lease ran out long ago
    with pytest.raises(HeldByAnotherDelivery):
        publish_post(post_id, session_factory=factory, publisher=b, task_id="b")
    assert copies(server, post_id) == 0


def test_the_history_scan_stops_at_the_floor_not_at_a_date(factory: sessionmaker[Session]) -> None:
    """A user session's scan compares Telegram's ids with the floor, never dates with a host clock:
    messages dated in the "future" (a skewed host wrote the intent) or the past do not matter."""
    server = FakeTelegramServer()
    publisher, client = worker(server)
    old = datetime.now(UTC) - timedelta(hours=2)
    for i in range(1, 5):
        client.add_source("@cars_news", FakeMessage(i, "older", date=old))
    client.add_source("@cars_news", FakeMessage(5, '<a href="https://t.me/cars_bot?start=contact_9">x</a>', date=old))
    assert publisher.find_published("@cars_news", 9, after_id=4, since=datetime.now(UTC)) == [5]
    assert publisher.find_published("@cars_news", 9, after_id=5, since=old - timedelta(days=1)) == []


# -- 2. a send that timed out is delivered later by telethon -------------------------------------------


def test_a_timed_out_send_is_not_delivered_later_beside_a_resend(factory: sessionmaker[Session]) -> None:
    server = FakeTelegramServer()
    publisher, client = worker(server, call_timeout=0.05)
    post_id = make_post(factory)
    client.send_delay = 0.2  # the server is slow: the caller gives up at 0.05 s, the request stays queued
    with pytest.raises(TransientError):
        publish_post(post_id, session_factory=factory, publisher=publisher)
    assert copies(server, post_id) == 0
    client.send_delay = 0
    # the retry comes at once: the outcome is unknown, so the lease holds
    with pytest.raises(HeldByAnotherDelivery):
        publish_post(post_id, session_factory=factory, publisher=publisher)
    age_intent(factory, post_id)
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.PUBLISHED
    client.send_delay, publisher.call_timeout = 0.3, 5.0  # run this process's loop long enough for
    publisher.send_message(1, "a queued send to go out now")  # a request still queued on it
    assert copies(server, post_id) == 1


def test_a_send_that_reached_telegram_before_the_timeout_is_found_not_resent(
        factory: sessionmaker[Session]) -> None:
    server = FakeTelegramServer()
    publisher, client = worker(server, call_timeout=0.05)
    make_post(factory)  # an earlier post gives the floor
    publish_post(1, session_factory=factory, publisher=publisher)
    post_id = make_post(factory, message_id=2)
    client.fault = lambda: "wire"  # the message lands, its answer never comes
    with pytest.raises(TransientError):
        publish_post(post_id, session_factory=factory, publisher=publisher)
    client.fault = None
    age_intent(factory, post_id)
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.PUBLISHED and result.recovered is True
    assert copies(server, post_id) == 1


# -- 3. a bot without a floor ---------------------------------------------------------------------


def test_a_bot_without_a_floor_does_not_resend_blindly(factory: sessionmaker[Session]) -> None:
    """No earlier publication: the bot probes ids from 1, finds the first 100 empty (deleted, or the
    channel's ids start higher) and must not conclude "absent"."""
    server = FakeTelegramServer()
    publisher, client = worker(server, bot=True)
    post_id = make_post(factory)
    crash_after_next_send(factory, client)
    with pytest.raises(RuntimeError):
        publish_post(post_id, session_factory=factory, publisher=publisher)
    age_intent(factory, post_id)
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.FAILED and "could not be checked" in (result.reason or "")
    assert copies(server, post_id) == 1


# -- 4. a missing @name -------------------------------------------------------------------------------


@pytest.mark.parametrize("message", ['No user has "cars_news" as username',
                                     'Cannot find any entity corresponding to "cars_news"',
                                     "Could not find the input entity for PeerChannel(channel_id=1)"])
def test_a_missing_channel_is_a_permanent_explained_failure(factory: sessionmaker[Session], message: str) -> None:
    publisher, client = worker(FakeTelegramServer())
    post_id = make_post(factory)
    client.fail_next.append(ValueError(message))
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.FAILED and "peer not found" in (result.reason or "")
    assert state(factory, post_id)["post"] == PostStatus.FAILED


def test_a_missing_source_channel_falls_back_to_the_text(factory: sessionmaker[Session]) -> None:
    publisher, client = worker(FakeTelegramServer())

    async def no_such_user(*args: Any, **kwargs: Any) -> Any:
        raise ValueError('No user has "source_cars" as username')

    client.get_messages = no_such_user  # type: ignore[method-assign]
    post_id = make_post(factory, media=[{"message_id": 1}])
    assert publish_post(post_id, session_factory=factory, publisher=publisher).status is PublishOutcome.PUBLISHED
    assert [s["kind"] for s in client.sends] == ["text"]


# -- 5. a -100 id with a user session ---------------------------------------------------------------------


def test_a_channel_id_with_a_user_session_is_resolved_once_and_kept(factory: sessionmaker[Session]) -> None:
    server = FakeTelegramServer()
    server.add_channel_dialog(1234567890, access_hash=987654321)
    publisher, client = worker(server, telegram_channel="-1001234567890")
    client.user_session = True
    publisher.peers = stored_peers(factory)
    first = make_post(factory)
    assert publish_post(first, session_factory=factory, publisher=publisher).status is PublishOutcome.PUBLISHED
    assert client.dialog_reads == 1
    with factory() as session:
        pub = session.scalar(select(Publication).where(Publication.post_id == first))
        assert (pub.peer_id, pub.peer_access_hash) == (-1001234567890, 987654321)
    # another process: the input peer comes from the database, the dialogs are not read again
    other, other_client = worker(server, telegram_channel="-1001234567890")
    other_client.user_session = True
    other.peers = stored_peers(factory)
    second = make_post(factory, message_id=2)
    assert publish_post(second, session_factory=factory, publisher=other).status is PublishOutcome.PUBLISHED
    assert other_client.dialog_reads == 0
    assert copies(server, first) == copies(server, second) == 1


def test_a_source_channel_id_is_resolved_once_and_kept_on_its_row(factory: sessionmaker[Session]) -> None:
    from cars_bot.db.models import Channel

    server = FakeTelegramServer()
    server.add_channel_dialog(1111111111, access_hash=42)
    publisher, client = worker(server)
    client.user_session = True
    publisher.peers = stored_peers(factory)
    post_id = make_post(factory, media=[{"message_id": 1, "channel": "-1001111111111"}])
    with factory() as session, session.begin():
        session.query(Channel).update({"telegram_id": -1001111111111})
    server.channels[-1001111111111] = {1: FakeMessage(1, "x", media=photo(1))}
    assert publish_post(post_id, session_factory=factory, publisher=publisher).status is PublishOutcome.PUBLISHED
    assert [s["kind"] for s in client.sends] == ["media"]
    with factory() as session:
        assert session.scalar(select(Channel.access_hash)) == 42
    assert stored_peers(factory)(-1001111111111) == (1111111111, 42)


def test_a_channel_id_the_account_cannot_see_is_a_permanent_explained_failure(
        factory: sessionmaker[Session]) -> None:
    publisher, client = worker(FakeTelegramServer(), telegram_channel="-1001234567890")
    client.user_session = True
    result = publish_post(make_post(factory), session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.FAILED and "not among this account's dialogs" in (result.reason or "")


# -- 6. a malformed session string ----------------------------------------------------------------------------


MALFORMED = "1" + base64.urlsafe_b64encode(b"\x02" * 20).decode()  # valid base64, wrong length: struct.error


def test_a_malformed_session_is_reported_not_raised() -> None:
    from telethon.sessions import StringSession

    with pytest.raises(Exception) as raw:  # what telethon itself does with it
        StringSession(MALFORMED)
    assert type(raw.value).__name__ == "error"  # struct.error
    assert "StringSession" in (validate_session_string(MALFORMED) or "")
    assert validate_session_string(None) is None


def test_a_malformed_session_fails_the_post_for_good_with_the_reason(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_client, "_runtimes", {})
    publisher = TelegramPublisher(telegram_settings(telegram_session_string=MALFORMED))
    post_id = make_post(factory)
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.FAILED and "TELEGRAM_SESSION_STRING is invalid" in (result.reason or "")
    with pytest.raises(NotConfigured):
        publisher.send_message(1, "x")


# -- 7. bot logins -------------------------------------------------------------------------------------------------


class LoginCountingClient:
    """telethon.TelegramClient's shape for the login test: `start(bot_token=)` is the login."""

    logins: ClassVar[int] = 0

    def __init__(self, session: Any, api_id: int, api_hash: str, **options: Any) -> None:
        self.session = session

    async def connect(self) -> None:
        pass

    async def is_user_authorized(self) -> bool:
        return self.session.auth_key is not None

    async def start(self, *, bot_token: str) -> None:
        from telethon.crypto import AuthKey

        LoginCountingClient.logins += 1
        self.session.set_dc(2, "149.154.167.51", 443)
        self.session.auth_key = AuthKey(b"\x07" * 256)

    async def send_message(self, peer: Any, text: str, **kwargs: Any) -> Any:
        return FakeMessage(1, text)

    async def disconnect(self) -> None:
        pass


def test_a_bot_logs_in_once_and_reuses_its_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import telethon

    LoginCountingClient.logins = 0
    monkeypatch.setattr(telethon, "TelegramClient", LoginCountingClient)
    monkeypatch.setattr(telegram_client, "_runtimes", {})
    settings = telegram_settings(**BOT, home=tmp_path)
    for _ in range(3):  # calls in one process, with a discarded client in between
        TelegramPublisher(settings).send_message(1, "hi")
        telegram.abandon_loop()
    assert LoginCountingClient.logins == 1
    # a recycled pool child (another pid) reuses the kept session: no login at all
    monkeypatch.setattr(telegram_client.os, "getpid", lambda: 424_242)
    TelegramPublisher(settings).send_message(1, "hi")
    assert LoginCountingClient.logins == 1
    (kept,) = (tmp_path / "telegram").iterdir()
    assert kept.stat().st_mode & 0o077 == 0  # the session is a secret: owner only
    telegram.close_process_client()


# -- 8. a media refusal at send time -------------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", [errors.ChatForwardsRestrictedError(request=None),
                                     errors.MediaInvalidError(request=None)])
def test_media_refused_at_send_time_falls_back_to_the_text(factory: sessionmaker[Session],
                                                           refusal: Exception) -> None:
    server = FakeTelegramServer()
    publisher, client = worker(server)
    for i in (1, 2):
        client.add_source("@source_cars", FakeMessage(i, "x", media=photo(i), grouped_id=3))
    post_id = make_post(factory, media=[{"message_id": 1}, {"message_id": 2}], message_ids=[1, 2])
    client.fail_next.append(refusal)
    result = publish_post(post_id, session_factory=factory, publisher=publisher)
    assert result.status is PublishOutcome.PUBLISHED
    assert [s["kind"] for s in client.sends] == ["text"] and copies(server, post_id) == 1
    assert state(factory, post_id)["pub"] == PublicationStatus.SENT


def test_other_refusals_still_fail(factory: sessionmaker[Session]) -> None:
    publisher, client = worker(FakeTelegramServer())
    client.fail_next.append(errors.ChatWriteForbiddenError(request=None))
    with pytest.raises(PermanentError):
        publisher.send_post("@cars_news", "<b>x</b>", [])
