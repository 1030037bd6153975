"""A fake telethon transport for the publishing tests: telethon's coroutine methods over in-memory channels.

It behaves like telethon where exactly-once depends on it: a send is queued in the client's "sender"
(a task on the caller's event loop) and the caller awaits its answer. A caller that gives up (timeout,
cancellation) does not withdraw the request: it is delivered the next time that loop runs, unless the
client was disconnected first or the loop is never run again. Several clients may share one
:class:`FakeTelegramServer` (two worker processes posting to one channel).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any


class FakeMessage:
    """What telethon returns for a message: `message` is the visible text, links live in entities."""

    def __init__(self, id: int, html_text: str = "", *, media: Any = None, grouped_id: int | None = None,
                 date: datetime | None = None) -> None:
        from telethon.extensions import html

        self.id = id
        self.message, self.entities = html.parse(html_text) if html_text else ("", [])
        self.media = media
        self.grouped_id = grouped_id
        self.date = date or datetime.now(UTC)


class FakeTelegramServer:
    """Telegram's side: the channels, message ids in arrival order, the account's dialogs."""

    def __init__(self) -> None:
        self.channels: dict[Any, dict[int, FakeMessage]] = {}
        self.sends: list[dict[str, Any]] = []
        self.dialogs: list[Any] = []
        self.lock = threading.RLock()
        self.timers: list[threading.Timer] = []  # requests Telegram received and processes later
        self._ids = itertools.count(1000)

    def settle(self) -> None:
        """Let every request Telegram received be processed (end of a test)."""
        for timer in list(self.timers):
            timer.join()

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    def add_channel_dialog(self, channel_id: int, access_hash: int, username: str | None = None) -> None:
        """Make a channel one of the account's dialogs (what a user session can resolve an id from)."""
        from telethon.tl import types

        entity = types.Channel(id=channel_id, title=f"channel {channel_id}", photo=types.ChatPhotoEmpty(),
                               date=datetime.now(UTC), access_hash=access_hash, username=username)
        self.dialogs.append(SimpleNamespace(entity=entity))

    def messages_mentioning(self, text: str) -> list[FakeMessage]:
        """Messages whose text or links contain `text` (not followed by a digit: contact_1 is not contact_10)."""
        pattern = re.compile(re.escape(text) + r"(?!\d)")
        with self.lock:
            return [m for msgs in self.channels.values() for m in msgs.values()
                    if pattern.search(m.message)
                    or any(pattern.search(getattr(e, "url", "") or "") for e in m.entities)]


class FakeTelegramClient:
    """The transport fake: telethon's coroutine methods over a (possibly shared) server.

    `fail_next` holds exceptions (real telethon error classes) raised by the next send calls;
    `after_send` is called after each successful send (used to simulate a crash before the commit);
    `send_delay` is how long the server takes to take a send; `fault`, when set, is asked before each
    send what goes wrong: None, "flood", "hang" (the request waits in the client's queue: it lands
    `hang_delay()` later, if the loop still runs then), "wire" (the message lands, its answer never
    comes), "late" (Telegram received it and posts it `late_delay()` later whatever the client does; no
    answer), "reset" (the message lands, then the connection breaks), "refused_reset" (the connection
    breaks before it is sent).
    """

    def __init__(self, server: FakeTelegramServer | None = None) -> None:
        self.server = server or FakeTelegramServer()
        self.fail_next: list[BaseException] = []
        self.after_send: Callable[[], None] | None = None
        self.send_delay = 0.0
        self.fault: Callable[[], str | None] | None = None
        self.hang_delay: Callable[[], float] = lambda: 0.2
        self.latency: Callable[[], float] = lambda: 0.0  # how long an ordinary send takes
        self.late_delay: Callable[[], float] = lambda: 0.3
        self.get_calls = 0
        self.disconnects = 0
        self.dialog_reads = 0
        # A user session from a StringSession knows no entities: a bare -100... id cannot be resolved
        # (telethon raises ValueError); bots may address a channel by id (access_hash=0).
        self.user_session = False
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def channels(self) -> dict[Any, dict[int, FakeMessage]]:
        return self.server.channels

    @property
    def sends(self) -> list[dict[str, Any]]:
        return self.server.sends

    def add_source(self, peer: Any, message: FakeMessage) -> None:
        with self.server.lock:
            self.channels.setdefault(self._key(peer), {})[message.id] = message

    def _key(self, peer: Any) -> Any:
        """Telegram addresses a channel by id whichever way the peer was written."""
        from telethon.tl import types

        if isinstance(peer, types.InputPeerChannel):
            return int(f"-100{peer.channel_id}")
        if self.user_session and isinstance(peer, int) and str(peer).startswith("-100"):
            raise ValueError(f"Could not find the input entity for PeerChannel(channel_id={str(peer)[4:]}) "
                             "(PeerChannel). Please read https://docs.telethon.dev/en/stable/concepts/entities.html")
        return peer

    async def _submit(self, deliver: Callable[[], Any]) -> Any:
        """Queue the request in the "sender" and await its answer (telethon's shape)."""
        fault = self.fault() if self.fault is not None else None
        task = asyncio.get_running_loop().create_task(self._transmit(deliver, fault))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def _transmit(self, deliver: Callable[[], Any], fault: str | None) -> Any:
        from telethon import errors

        if fault == "flood":
            raise errors.FloodWaitError(request=None, capture=3)
        if fault == "refused_reset":
            raise ConnectionError("connection reset before the request was written")
        if fault == "late":
            timer = threading.Timer(self.late_delay(), deliver)
            timer.daemon = True
            self.server.timers.append(timer)
            timer.start()
            await asyncio.sleep(3600)  # the answer never comes
        if fault in ("wire", "reset"):
            deliver()
            if fault == "reset":
                raise ConnectionError("connection reset after the request was written")
            await asyncio.sleep(3600)  # the answer never comes
        if self.send_delay or fault == "hang":
            await asyncio.sleep(self.send_delay or self.hang_delay())
        elif latency := self.latency():
            await asyncio.sleep(latency)
        if self.fail_next:
            raise self.fail_next.pop(0)
        return deliver()

    def _sent(self, kind: str, peer: Any, payload: Any, ids: list[int]) -> None:
        self.sends.append({"kind": kind, "peer": peer, "payload": payload, "ids": ids})
        if self.after_send is not None:
            self.after_send()

    async def send_message(self, peer: Any, text: str, *, parse_mode: str | None = None,
                           link_preview: bool = True) -> FakeMessage:
        assert parse_mode == "html"
        assert link_preview is False
        key = self._key(peer)

        def deliver() -> FakeMessage:
            with self.server.lock:
                message = FakeMessage(self.server.next_id(), text)
                self.channels.setdefault(key, {})[message.id] = message
                self._sent("text", key, text, [message.id])
            return message

        return await self._submit(deliver)

    async def send_file(self, peer: Any, file: Any, *, caption: str = "", parse_mode: str | None = None) -> Any:
        assert parse_mode == "html"
        files = file if isinstance(file, list) else [file]
        assert len(files) <= 10
        key = self._key(peer)

        def deliver() -> Any:
            with self.server.lock:
                group = self.server.next_id() if isinstance(file, list) else None
                messages = []
                for index, media in enumerate(files):
                    message = FakeMessage(self.server.next_id(), caption if index == 0 else "", media=media,
                                          grouped_id=group)
                    self.channels.setdefault(key, {})[message.id] = message
                    messages.append(message)
                self._sent("album" if isinstance(file, list) else "media", key, caption, [m.id for m in messages])
            return messages if isinstance(file, list) else messages[0]

        return await self._submit(deliver)

    async def get_messages(self, peer: Any, limit: int | None = None, *, ids: Any = None,
                           offset_id: int = 0) -> list[Any]:
        self.get_calls += 1
        await asyncio.sleep(0)  # a round trip: other tasks on the loop (queued sends) run meanwhile
        with self.server.lock:
            messages = dict(self.channels.get(self._key(peer), {}))
        if ids is not None:
            return [messages.get(i) for i in ids]
        newest_first = sorted((m for m in messages.values() if not offset_id or m.id < offset_id),
                              key=lambda m: m.id, reverse=True)
        return newest_first[: limit or 100]

    async def iter_dialogs(self) -> Any:
        self.dialog_reads += 1
        for dialog in list(self.server.dialogs):
            yield dialog

    async def disconnect(self) -> None:
        """Like telethon's: pending requests are dropped (their futures cancelled)."""
        self.disconnects += 1
        for task in list(self._pending):
            task.cancel()


def photo(n: int) -> Any:
    from telethon.tl import types

    return types.MessageMediaPhoto(photo=types.PhotoEmpty(id=n))


def telegram_settings(**overrides: Any) -> SimpleNamespace:
    values = {
        "telegram_channel": "@cars_news", "telegram_bot_username": "cars_bot",
        "telegram_session_string": "session", "telegram_api_id": 1, "telegram_api_hash": "hash",
        "telegram_bot_token": None,
    }
    values.update(overrides)
    return SimpleNamespace(**values)
