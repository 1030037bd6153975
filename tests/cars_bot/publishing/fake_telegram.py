"""A fake telethon transport for the publishing tests: telethon's coroutine methods over in-memory channels."""

from __future__ import annotations

import asyncio
import itertools
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


class FakeTelegramClient:
    """The transport fake: telethon's coroutine methods over an in-memory set of channels.

    `fail_next` holds exceptions (real telethon error classes) raised by the next send calls;
    `after_send` is called after each successful send (used to simulate a crash before the commit).
    """

    def __init__(self) -> None:
        self.channels: dict[Any, dict[int, FakeMessage]] = {}
        self.sends: list[dict[str, Any]] = []
        self.fail_next: list[BaseException] = []
        self.after_send: Callable[[], None] | None = None
        self.send_delay = 0.0
        self._ids = itertools.count(1000)
        self.get_calls = 0

    def add_source(self, peer: Any, message: FakeMessage) -> None:
        self.channels.setdefault(peer, {})[message.id] = message

    async def _before_send(self) -> None:
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _sent(self, kind: str, peer: Any, payload: Any, ids: list[int]) -> None:
        self.sends.append({"kind": kind, "peer": peer, "payload": payload, "ids": ids})
        if self.after_send is not None:
            self.after_send()

    async def send_message(self, peer: Any, text: str, *, parse_mode: str | None = None,
                           link_preview: bool = True) -> FakeMessage:
        await self._before_send()
        assert parse_mode == "html"
        assert link_preview is False
        message = FakeMessage(next(self._ids), text)
        self.channels.setdefault(peer, {})[message.id] = message
        self._sent("text", peer, text, [message.id])
        return message

    async def send_file(self, peer: Any, file: Any, *, caption: str = "", parse_mode: str | None = None) -> Any:
        await self._before_send()
        assert parse_mode == "html"
        files = file if isinstance(file, list) else [file]
        assert len(files) <= 10
        group = next(self._ids) if isinstance(file, list) else None
        messages = []
        for index, media in enumerate(files):
            message = FakeMessage(next(self._ids), caption if index == 0 else "", media=media, grouped_id=group)
            self.channels.setdefault(peer, {})[message.id] = message
            messages.append(message)
        self._sent("album" if isinstance(file, list) else "media", peer, caption, [m.id for m in messages])
        return messages if isinstance(file, list) else messages[0]

    async def get_messages(self, peer: Any, limit: int | None = None, *, ids: Any = None,
                           offset_id: int = 0) -> list[Any]:
        self.get_calls += 1
        messages = self.channels.get(peer, {})
        if ids is not None:
            return [messages.get(i) for i in ids]
        newest_first = sorted((m for m in messages.values() if not offset_id or m.id < offset_id),
                              key=lambda m: m.id, reverse=True)
        return newest_first[: limit or 100]


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
