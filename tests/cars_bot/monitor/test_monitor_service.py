"""The monitor's handling, on real Telethon TL objects from a fake Telegram (no network), a real test
database and the real broker: every stored post is counted on the broker exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from telethon.errors import FloodWaitError

from tests.cars_bot.monitor.conftest import MonitorKit, running, until
from tests.cars_bot.monitor.fake_monitor_client import message, service_message

AD = "Продам Toyota Camry 2018, 2.5 АКПП, пробег 87 000 км. 2 150 000 ₽"


def test_text_only_single_media_and_skipped_messages(kit: MonitorKit) -> None:
    channel_id = kit.add_channel("cars_msk", phone="+79990001122", seller="seller_one")
    kit.fake.add_channel(101, "cars_msk")

    async def scenario() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 11, AD), service_message(101, 12), message(101, 13, "   "),
                            message(101, 14, "Фото машины", photo=True), message(101, 15, "", video=True))
        await monitor.shutdown()

    asyncio.run(scenario())
    posts = kit.posts()
    assert [p.message_id for p in posts] == [11, 14, 15]
    text_only, photo, video = posts
    assert text_only.media == [] and text_only.message_ids == [] and text_only.media_group_id is None
    assert text_only.link == "https://t.me/cars_msk/11"
    assert photo.message_ids == [14] and photo.media[0]["type"] == "photo"
    assert photo.media[0]["channel"] == "@cars_msk" and photo.media[0]["message_id"] == 14
    assert video.media[0]["type"] == "document" and video.text == ""
    assert kit.queued() == 3
    assert all(p.dispatch_task_id and p.dispatched_at for p in posts)
    with kit.db() as session:
        from cars_bot.db.models import Post

        contact = session.get(Post, text_only.id).contact
        assert (contact.phone, contact.telegram_username) == ("+79990001122", "seller_one")
    assert kit.position(channel_id) == 15
    assert 101 in kit.fake.joined  # a public channel the account had left is joined once resolved


def test_an_album_is_one_post_with_all_its_media(kit: MonitorKit) -> None:
    kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")

    async def scenario() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 20, "", photo=True, grouped_id=777),
                            message(101, 21, AD, photo=True, grouped_id=777),
                            message(101, 22, "", photo=True, grouped_id=777))
        assert kit.posts() == []  # held until the album ends
        await kit.fake.post(message(101, 23, "Следующее объявление"))  # the next message ends it
        # an album that ends by a quiet moment
        monitor.album_wait = 0.01
        await kit.fake.post(message(101, 30, "Второй альбом", photo=True, grouped_id=888),
                            message(101, 31, "", photo=True, grouped_id=888))
        await until(lambda: len(kit.posts()) == 3, "the quiet album to be stored")
        await monitor.shutdown()

    asyncio.run(scenario())
    album, text, quiet = kit.posts()
    assert (album.message_id, album.text, album.media_group_id) == (20, AD, 777)
    assert album.message_ids == [20, 21, 22] and [m["message_id"] for m in album.media] == [20, 21, 22]
    assert text.message_id == 23 and text.media == []
    assert quiet.message_ids == [30, 31] and quiet.text == "Второй альбом"
    assert kit.queued() == 3


def test_a_duplicate_delivery_stores_and_enqueues_nothing(kit: MonitorKit) -> None:
    kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")

    async def scenario() -> Any:
        monitor = kit.monitor()
        await monitor.start()
        updates = kit.fake.arrive(message(101, 40, AD), message(101, 41, "", photo=True, grouped_id=5),
                                  message(101, 42, "", photo=True, grouped_id=5), message(101, 43, "конец"))
        await kit.fake.deliver(*updates)
        await kit.fake.deliver(*updates)  # Telegram delivers the same updates again
        await monitor.catch_up_all()  # and the history holds them too
        await monitor.shutdown()
        return monitor.beat

    beat = asyncio.run(scenario())
    assert [p.message_id for p in kit.posts()] == [40, 41, 43]
    assert kit.queued() == 3
    assert beat.stored == 3 and beat.duplicates == 3


def test_a_channel_added_while_running_is_joined_and_a_removed_one_dropped(kit: MonitorKit) -> None:
    old = kit.add_channel("old_cars")
    kit.fake.add_channel(201, "old_cars")
    kit.fake.add_channel(202, "new_cars")
    kit.fake.history[202] = [message(202, 5, "старое сообщение до подключения")]

    async def body(stop: asyncio.Event) -> None:
        await until(lambda: kit.fake.handlers and monitor.beat.state == "listening", "listening")
        new = kit.add_channel("https://t.me/New_Cars")  # what the Sheets sync writes
        kit.set_active(old, False)
        await until(lambda: set(monitor.beat.channels) == {"https://t.me/New_Cars"}, "the refresh")
        await kit.fake.post(message(201, 50, "из удалённого канала"), message(202, 6, AD))
        await until(lambda: len(kit.posts()) == 1, "the new channel's post")
        assert kit.position(new) == 6

    monitor = kit.monitor(interval=0.05)
    asyncio.run(running(monitor, body))
    (post,) = kit.posts()
    assert post.message_id == 6 and post.text == AD  # the history before joining is not back-filled
    assert 202 in kit.fake.joined
    assert kit.queued() == 1
    assert kit.fake.connects == 1  # the refreshes never mistook a quiet connection for a lost one


def test_catch_up_after_a_disconnect_ingests_what_arrived_meanwhile_once(kit: MonitorKit) -> None:
    channel_id = kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")
    kit.fake.history[101] = [message(101, 1, "до старта")]

    async def body(stop: asyncio.Event) -> None:
        await until(lambda: monitor.beat.state == "listening", "listening")
        await kit.fake.post(message(101, 2, AD))
        kit.fake.drop(ConnectionResetError("connection reset by peer"))
        # while disconnected: nothing is delivered, the channel's history grows
        kit.fake.arrive(message(101, 3, "пока были offline"), message(101, 4, "", photo=True, grouped_id=9),
                        message(101, 5, "", photo=True, grouped_id=9), service_message(101, 6))
        await until(lambda: kit.fake.connects >= 2 and monitor.beat.state == "listening", "the reconnect")
        await until(lambda: len(kit.posts()) == 3 and kit.position(channel_id) == 6, "the catch-up")

    monitor = kit.monitor(interval=0.05)
    asyncio.run(running(monitor, body))
    posts = kit.posts()
    assert [p.message_id for p in posts] == [2, 3, 4]
    assert posts[2].message_ids == [4, 5]
    assert kit.queued() == 3


def test_catch_up_after_a_restart_reads_from_the_stored_position_without_resolving_again(kit: MonitorKit) -> None:
    channel_id = kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")

    async def first() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 7, AD))
        await monitor.shutdown()

    async def second() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await monitor.shutdown()

    asyncio.run(first())
    kit.fake.arrive(message(101, 8, "пока монитор стоял"), message(101, 9, "и ещё", photo=True))
    asyncio.run(second())
    assert [p.message_id for p in kit.posts()] == [7, 8, 9]
    assert kit.queued() == 3
    assert kit.position(channel_id) == 9
    assert kit.fake.requests.count("ResolveUsernameRequest") == 1  # the peer came from the database


def test_floodwait_and_network_errors_back_off_then_resolve(kit: MonitorKit) -> None:
    kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")
    kit.fake.fail_next = [FloodWaitError(request=None, capture=30), ConnectionResetError("reset")]

    async def scenario() -> Any:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 1, AD))
        await monitor.shutdown()
        return monitor

    monitor = asyncio.run(scenario())
    assert kit.fake.requests[:3] == ["ResolveUsernameRequest"] * 3
    flood, backoff = kit.sleeps.slept  # nothing else waited
    assert flood == 31.0  # the 30 s Telegram asked for, and a second
    assert 1.6 <= backoff <= 2.4  # the second try's backoff (2 s +-20%) after the reset
    assert monitor.beat.flood_waits == 1 and len(kit.posts()) == 1 and kit.queued() == 1


def test_a_channel_that_cannot_be_resolved_is_recorded_and_retried_later(kit: MonitorKit) -> None:
    from sqlalchemy import select

    from cars_bot.db.models import MonitorChannel

    missing = kit.add_channel("no_such_channel")

    async def scenario() -> Any:
        monitor = kit.monitor()
        await monitor.start()
        await monitor.refresh()  # too soon for another try: no request
        await monitor.shutdown()
        return monitor

    monitor = asyncio.run(scenario())
    assert kit.fake.requests.count("ResolveUsernameRequest") == 1
    assert "UsernameNotOccupied" in monitor.beat.failed["no_such_channel"]
    with kit.db() as session:
        state = session.scalar(select(MonitorChannel).where(MonitorChannel.channel_id == missing))
        assert state.peer_id is None and "UsernameNotOccupied" in state.last_error


def test_stop_in_the_middle_of_an_album_completes_and_stores_it(kit: MonitorKit) -> None:
    channel_id = kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")

    async def body(stop: asyncio.Event) -> None:
        await until(lambda: monitor.beat.state == "listening", "listening")
        parts = kit.fake.arrive(message(101, 60, AD, photo=True, grouped_id=3),
                                message(101, 61, "", photo=True, grouped_id=3),
                                message(101, 62, "", photo=True, grouped_id=3))
        await kit.fake.deliver(*parts[:2])  # SIGTERM arrives before the third part is delivered
        stop.set()

    monitor = kit.monitor()
    asyncio.run(running(monitor, body))
    (album,) = kit.posts()
    assert album.message_ids == [60, 61, 62] and album.text == AD
    assert kit.position(channel_id) == 62 and kit.queued() == 1
    assert monitor.beat.state == "stopped" and not kit.fake.connected


def test_an_album_that_cannot_be_completed_at_stop_is_left_for_the_next_catch_up(kit: MonitorKit) -> None:
    channel_id = kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")
    kit.fake.history[101] = [message(101, 69, "до старта")]

    async def first() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 70, AD, photo=True, grouped_id=4))
        kit.fake.arrive(message(101, 71, "", photo=True, grouped_id=4))
        kit.fake.drop()  # the connection is gone: the album cannot be completed now
        await monitor.shutdown()

    async def second() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(101, 72, "после альбома"))
        await monitor.shutdown()

    asyncio.run(first())
    assert kit.posts() == [] and kit.position(channel_id) == 69
    asyncio.run(second())
    album, after = kit.posts()
    assert album.message_ids == [70, 71] and after.message_id == 72
    assert kit.queued() == 2


@pytest.mark.parametrize("ref", ["https://t.me/+AbCdEf123", "-1000000000303"])
def test_invite_links_and_numeric_ids_are_resolved_once(kit: MonitorKit, ref: str) -> None:
    kit.add_channel(ref)
    kit.fake.add_channel(303, None, invite="AbCdEf123")

    async def scenario() -> None:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(303, 1, AD, photo=True))
        await monitor.shutdown()

    asyncio.run(scenario())
    (post,) = kit.posts()
    assert post.link == "https://t.me/c/303/1" and post.media[0]["channel"] == "-100303"
    if ref.startswith("https"):
        assert kit.fake.requests[:2] == ["CheckChatInviteRequest", "ImportChatInviteRequest"] and 303 in kit.fake.joined
    else:
        assert kit.fake.requests[0] == "get_input_entity"


def test_a_database_hiccup_during_a_refresh_does_not_end_the_monitor(kit: MonitorKit,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    from cars_bot.monitor import store

    kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")
    real = store.active_channels
    calls: list[int] = []

    def flaky(**options: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the first refresh after the start
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(**options)

    monkeypatch.setattr(store, "active_channels", flaky)

    async def body(stop: asyncio.Event) -> None:
        await until(lambda: len(calls) >= 3, "a refresh after the failed one")
        await kit.fake.post(message(101, 1, AD))

    monitor = kit.monitor(interval=0.02)
    asyncio.run(running(monitor, body))
    assert len(kit.posts()) == 1 and kit.queued() == 1 and kit.fake.connects == 1


def test_a_stop_during_a_long_floodwait_does_not_wait_it_out(kit: MonitorKit) -> None:
    from cars_bot.monitor.limiter import TelegramLimiter

    kit.add_channel("cars_msk")
    kit.fake.add_channel(101, "cars_msk")
    kit.fake.fail_next = [FloodWaitError(request=None, capture=3600)]
    monitor = kit.monitor()
    monitor.limiter = TelegramLimiter(min_interval=0)  # really sleeps

    async def body(stop: asyncio.Event) -> None:
        await until(lambda: monitor.limiter.flood_waits == 1, "the FloodWait")
        stop.set()  # SIGTERM while waiting out the hour Telegram asked for

    asyncio.run(running(monitor, body))  # fails after 20 s if the stop waited
    assert monitor.beat.state == "stopped" and not kit.fake.connected


def test_a_channel_cell_changed_in_the_sheet_is_resolved_again_from_a_fresh_position(kit: MonitorKit) -> None:
    from cars_bot.db.models import Channel

    channel_id = kit.add_channel("first_cars")
    kit.fake.add_channel(401, "first_cars")
    kit.fake.add_channel(402, "second_cars")
    kit.fake.history[402] = [message(402, 3, "старое во втором канале")]

    async def scenario() -> Any:
        monitor = kit.monitor()
        await monitor.start()
        await kit.fake.post(message(401, 90, AD))
        with kit.db.begin() as session:
            session.get(Channel, channel_id).username = "second_cars"  # the same row now names another channel
        await monitor.refresh()
        await kit.fake.post(message(401, 91, "из прежнего канала"), message(402, 4, "из нового канала"))
        await monitor.shutdown()
        return monitor

    monitor = asyncio.run(scenario())
    assert [(p.message_id, p.link) for p in kit.posts()] == [(4, "https://t.me/second_cars/4"),
                                                             (90, "https://t.me/first_cars/90")]
    assert set(monitor.listened) == {402} and kit.position(channel_id) == 4
    assert kit.fake.requests.count("ResolveUsernameRequest") == 2 and kit.queued() == 2
