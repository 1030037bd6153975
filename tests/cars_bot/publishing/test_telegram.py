"""The telethon adapter against a fake transport raising real telethon errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from telethon import errors

from cars_bot.errors import PermanentError, TransientError
from cars_bot.publishing import telegram, telegram_client
from cars_bot.publishing.delivery import NotSent
from cars_bot.publishing.telegram import TelegramPublisher, map_telegram_error, telegram_peer
from tests.cars_bot.publishing.fake_telegram import FakeMessage, FakeTelegramClient, photo, telegram_settings

HTML = '🚗 <b>BMW</b>\n📞 <a href="https://t.me/cars_bot?start=contact_7">Получить контакты</a>'


def test_text_post_is_sent_with_link_previews_off(telegram_publisher: TelegramPublisher,
                                                  fake_client: FakeTelegramClient) -> None:
    ids = telegram_publisher.send_post("@cars_news", HTML, [], post_id=7)
    assert len(ids) == 1
    assert fake_client.sends == [{"kind": "text", "peer": "@cars_news", "payload": HTML, "ids": ids}]


def test_album_resends_source_media_with_the_caption_at_most_ten(
        telegram_publisher: TelegramPublisher, fake_client: FakeTelegramClient) -> None:
    for i in range(1, 13):
        fake_client.add_source("@source", FakeMessage(i, "seller text with @contacts", media=photo(i), grouped_id=9))
    refs = [{"channel": "@source", "message_id": i} for i in range(1, 13)]
    fake_client.server.add_channel_dialog(1234, access_hash=555)
    ids = telegram_publisher.send_post("-1001234", HTML, refs, post_id=7)
    assert len(ids) == 10
    (send,) = fake_client.sends
    assert send["kind"] == "album" and send["peer"] == -1001234 and send["payload"] == HTML
    # the caption is ours, never the source's text
    first = fake_client.channels[-1001234][ids[0]]
    assert "contacts" not in first.message and "BMW" in first.message


def test_text_only_source_is_sent_as_text_not_copied(telegram_publisher: TelegramPublisher,
                                                     fake_client: FakeTelegramClient) -> None:
    fake_client.add_source("@source", FakeMessage(5, "Продам, звоните +7999"))
    telegram_publisher.send_post("@cars_news", HTML, [{"channel": "@source", "message_id": 5}])
    assert [s["kind"] for s in fake_client.sends] == ["text"]


def test_single_media_is_sent_as_one_file(telegram_publisher: TelegramPublisher,
                                          fake_client: FakeTelegramClient) -> None:
    fake_client.add_source("@source", FakeMessage(5, "x", media=photo(5)))
    ids = telegram_publisher.send_post("@cars_news", HTML, [{"channel": "@source", "message_id": 5}])
    assert [s["kind"] for s in fake_client.sends] == ["media"] and len(ids) == 1


def test_flood_wait_becomes_a_transient_error_with_telegrams_delay(
        telegram_publisher: TelegramPublisher, fake_client: FakeTelegramClient) -> None:
    fake_client.fail_next.append(errors.FloodWaitError(request=None, capture=30))
    with pytest.raises(TransientError) as caught:
        telegram_publisher.send_post("@cars_news", HTML, [])
    assert caught.value.retry_after == 30
    assert isinstance(caught.value, NotSent)  # Telegram did nothing: safe to roll the claim back
    assert fake_client.sends == []


@pytest.mark.parametrize(
    "error",
    [
        errors.ChatWriteForbiddenError(request=None),
        errors.ChannelPrivateError(request=None),
        errors.MessageTooLongError(request=None),
        errors.AuthKeyUnregisteredError(request=None),
        errors.RPCError(request=None, message="SOMETHING_ODD", code=400),
    ],
)
def test_permanent_errors(telegram_publisher: TelegramPublisher, fake_client: FakeTelegramClient,
                          error: Exception) -> None:
    fake_client.fail_next.append(error)
    with pytest.raises(PermanentError):
        telegram_publisher.send_post("@cars_news", HTML, [])


@pytest.mark.parametrize(
    "error",
    [
        errors.RPCError(request=None, message="INTERNAL", code=500),
        errors.RpcMcgetFailError(request=None),
        ConnectionError("connection reset"),
        OSError("network unreachable"),
    ],
)
def test_transient_errors_during_the_send_are_ambiguous(telegram_publisher: TelegramPublisher,
                                                        fake_client: FakeTelegramClient,
                                                        error: Exception) -> None:
    fake_client.fail_next.append(error)
    with pytest.raises(TransientError) as caught:
        telegram_publisher.send_post("@cars_news", HTML, [])
    assert not isinstance(caught.value, NotSent)


def test_a_hanging_call_times_out_as_transient(fake_client: FakeTelegramClient) -> None:
    publisher = TelegramPublisher(telegram_settings(), client=fake_client, call_timeout=0.05)
    fake_client.send_delay = 1.0
    with pytest.raises(TransientError):
        publisher.send_post("@cars_news", HTML, [])


def test_error_mapping_table() -> None:
    assert isinstance(map_telegram_error(errors.SlowModeWaitError(request=None, capture=12)), NotSent)
    assert map_telegram_error(errors.SlowModeWaitError(request=None, capture=12)).retry_after == 12
    assert isinstance(map_telegram_error(ConnectionError(), attempted=False), NotSent)
    assert isinstance(map_telegram_error(ValueError("Could not find the input entity for X")), PermanentError)
    assert map_telegram_error(KeyError("unrelated")) is None


def test_send_message_to_a_user(telegram_publisher: TelegramPublisher, fake_client: FakeTelegramClient) -> None:
    message_id = telegram_publisher.send_message(555, "<b>Контакты</b>")
    assert fake_client.sends[0]["peer"] == 555 and message_id == fake_client.sends[0]["ids"][0]


def test_peers() -> None:
    assert telegram_peer("@cars") == "@cars"
    assert telegram_peer("-1001234") == -1001234
    assert telegram_peer(77) == 77


def test_find_published_by_message_id_probe(fake_client: FakeTelegramClient) -> None:
    publisher = TelegramPublisher(telegram_settings(telegram_session_string=None, telegram_bot_token="t"),
                                  client=fake_client)
    assert publisher.is_bot
    for i in range(1, 40):
        fake_client.add_source("@cars_news", FakeMessage(i, f"other post {i}"))
    # post 7's album: three messages, the caption on the first; post 70's link must not match post 7
    fake_client.add_source("@cars_news", FakeMessage(40, HTML.replace("contact_7", "contact_70")))
    fake_client.add_source("@cars_news", FakeMessage(41, HTML, media=photo(1), grouped_id=5))
    fake_client.add_source("@cars_news", FakeMessage(42, "", media=photo(2), grouped_id=5))
    fake_client.add_source("@cars_news", FakeMessage(43, "", media=photo(3), grouped_id=5))
    assert publisher.find_published("@cars_news", 7, after_id=30) == [41, 42, 43]
    assert publisher.find_published("@cars_news", 8, after_id=30) == []
    assert publisher.find_published("@cars_news", 7, after_id=None) == [41, 42, 43]


def test_find_published_gives_up_when_it_cannot_tell(fake_client: FakeTelegramClient) -> None:
    publisher = TelegramPublisher(telegram_settings(telegram_session_string=None, telegram_bot_token="t"),
                                  client=fake_client, scan_limit=200)
    for i in range(1, 400):
        fake_client.add_source("@cars_news", FakeMessage(i, "busy channel"))
    assert publisher.find_published("@cars_news", 7, after_id=0) is None


def test_find_published_by_history_scan(telegram_publisher: TelegramPublisher,
                                        fake_client: FakeTelegramClient) -> None:
    now = datetime.now(UTC)
    for i in range(1, 250):
        fake_client.add_source("@cars_news", FakeMessage(i, "older", date=now - timedelta(hours=1)))
    since = now - timedelta(minutes=5)
    assert telegram_publisher.find_published("@cars_news", 7, since=since) == []
    fake_client.add_source("@cars_news", FakeMessage(250, HTML, date=now))
    assert telegram_publisher.find_published("@cars_news", 7, since=since) == [250]


def valid_session_string() -> str:
    from telethon.crypto import AuthKey
    from telethon.sessions import StringSession

    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(b"\x01" * 256)
    return session.save()


class FakeTelethonClient:
    """Stands in for telethon.TelegramClient in the process-cache test (no network)."""

    instances: ClassVar[list[FakeTelethonClient]] = []

    def __init__(self, session: Any, api_id: int, api_hash: str, **options: Any) -> None:
        self.options = options
        self.connects = 0
        self.loops: set[int] = set()
        FakeTelethonClient.instances.append(self)

    async def connect(self) -> None:
        self.connects += 1
        self.loops.add(id(asyncio.get_running_loop()))

    async def is_user_authorized(self) -> bool:
        return True

    async def send_message(self, peer: Any, text: str, **kwargs: Any) -> Any:
        self.loops.add(id(asyncio.get_running_loop()))
        return FakeMessage(1, text)

    async def disconnect(self) -> None:
        pass


def test_one_client_per_process_connected_once_on_one_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import telethon

    FakeTelethonClient.instances.clear()
    monkeypatch.setattr(telethon, "TelegramClient", FakeTelethonClient)
    monkeypatch.setattr(telegram_client, "_runtimes", {})
    settings = telegram_settings(telegram_session_string=valid_session_string())
    for _ in range(3):
        TelegramPublisher(settings).send_message(1, "hi")
    (client,) = FakeTelethonClient.instances
    assert client.connects == 1
    assert len(client.loops) == 1  # the same private loop every time, no asyncio.run per call
    # FloodWait must reach the task instead of sleeping inside the worker
    assert client.options["flood_sleep_threshold"] == 0
    # a forked child (another pid) gets its own loop and client
    monkeypatch.setattr(telegram_client.os, "getpid", lambda: 999_999)
    TelegramPublisher(settings).send_message(1, "hi")
    assert len(FakeTelethonClient.instances) == 2
    telegram.close_process_client()


def test_a_malformed_session_string_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cars_bot.errors import NotConfigured

    monkeypatch.setattr(telegram_client, "_runtimes", {})
    with pytest.raises(NotConfigured, match="TELEGRAM_SESSION_STRING"):
        TelegramPublisher(telegram_settings(telegram_session_string="not-a-session")).send_message(1, "hi")


def test_unreachable_source_media_falls_back_to_the_text(telegram_publisher: TelegramPublisher,
                                                         fake_client: FakeTelegramClient) -> None:
    async def private_source(*args: Any, **kwargs: Any) -> Any:
        raise errors.ChannelPrivateError(request=None)

    fake_client.get_messages = private_source  # type: ignore[method-assign]
    telegram_publisher.send_post("@cars_news", HTML, [{"channel": "@gone", "message_id": 1}])
    assert [s["kind"] for s in fake_client.sends] == ["text"]


class SoftTimeLimit(Exception):
    """Stands in for celery's SoftTimeLimitExceeded, raised by a signal handler mid-call."""


def test_an_interrupted_call_is_cancelled_not_resumed_later(telegram_publisher: TelegramPublisher,
                                                            fake_client: FakeTelegramClient) -> None:
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise SoftTimeLimit()

    previous = signal.signal(signal.SIGALRM, interrupt)
    fake_client.send_delay = 0.3
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(SoftTimeLimit):
            telegram_publisher.send_post("@cars_news", HTML, [])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    fake_client.send_delay = 0.5  # long enough for an orphaned send to wake up and post meanwhile
    telegram_publisher.send_message(1, "next call runs the loop again")
    assert [s["kind"] for s in fake_client.sends] == ["text"] and fake_client.sends[0]["peer"] == 1


def test_a_discarded_client_is_dropped_and_its_loop_never_runs_again() -> None:
    from cars_bot.publishing import telegram_client

    runtime = telegram_client._ProcessRuntime(loop=asyncio.new_event_loop(), client=object(), client_key=("k",))
    old_loop = runtime.loop
    telegram_client.abandon_loop(runtime)
    assert runtime.client is None and runtime.loop is not old_loop and runtime.abandoned == [old_loop]
