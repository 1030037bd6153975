"""A fake Telegram at the monitor's network boundary: the Telethon client methods the monitor uses,
answering with real Telethon TL objects (Channel, Message, UpdateNewChannelMessage, ResolvedPeer ...).

`make_client(settings)` is the factory `MONITOR_CLIENT_FACTORY` points at in the process tests: any
username resolves to a channel, the connection stays up, and the messages the test writes to a file
arrive (ScriptedClient).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telethon.errors import UsernameNotOccupiedError
from telethon.tl.functions.channels import JoinChannelRequest
from telethon.tl.functions.contacts import ResolveUsernameRequest
from telethon.tl.functions.messages import CheckChatInviteRequest, ImportChatInviteRequest
from telethon.tl.types import (
    Channel,
    ChatInvite,
    ChatInviteAlready,
    ChatPhotoEmpty,
    Document,
    InputPeerChannel,
    Message,
    MessageActionPinMessage,
    MessageMediaDocument,
    MessageMediaPhoto,
    MessageService,
    PeerChannel,
    Photo,
    PhotoEmpty,
    UpdateNewChannelMessage,
    Updates,
)
from telethon.tl.types.contacts import ResolvedPeer

WHEN = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def channel(peer_id: int, username: str | None = None, *, left: bool = True) -> Channel:
    return Channel(id=peer_id, title=f"Channel {username or peer_id}", photo=ChatPhotoEmpty(), date=WHEN,
                   broadcast=True, left=left, access_hash=peer_id * 7, username=username)


def message(peer_id: int, message_id: int, text: str = "", *, photo: bool = False, video: bool = False,
            grouped_id: int | None = None) -> Message:
    media = None
    if photo:
        media = MessageMediaPhoto(photo=Photo(id=message_id * 1000, access_hash=1, file_reference=b"", date=WHEN,
                                              sizes=[], dc_id=2))
    elif video:
        media = MessageMediaDocument(document=Document(id=message_id * 1000, access_hash=1, file_reference=b"",
                                                       date=WHEN, mime_type="video/mp4", size=10, dc_id=2,
                                                       attributes=[]))
    return Message(id=message_id, peer_id=PeerChannel(peer_id), date=WHEN, message=text, media=media,
                   grouped_id=grouped_id)


def service_message(peer_id: int, message_id: int) -> MessageService:
    return MessageService(id=message_id, peer_id=PeerChannel(peer_id), date=WHEN,
                          action=MessageActionPinMessage())


class FakeMonitorClient:
    """Telethon's client methods the monitor uses, over in-memory channels (see the module docstring)."""

    def __init__(self) -> None:
        self.by_username: dict[str, Channel] = {}
        self.by_invite: dict[str, Channel] = {}
        self.history: dict[int, list[Any]] = {}
        self.joined: set[int] = set()
        self.requests: list[str] = []  # class names of the requests made, in order
        self.fail_next: list[BaseException] = []  # raised by the next requests (any kind)
        self.handlers: list[Any] = []
        self.connects = 0
        self.authorized = True
        self.fail_connect: list[BaseException] = []
        self._disconnected: asyncio.Future[None] | None = None
        self._pts = itertools.count(1)

    # channels and messages, as the test arranges them
    def add_channel(self, peer_id: int, username: str | None = None, invite: str | None = None) -> Channel:
        chat = channel(peer_id, username)
        if username:
            self.by_username[username.lower()] = chat
        if invite:
            self.by_invite[invite] = chat
        self.history.setdefault(peer_id, [])
        return chat

    def arrive(self, *messages: Any) -> list[UpdateNewChannelMessage]:
        """Messages posted in their channels (history), and their updates (for `deliver`)."""
        updates = []
        for item in messages:
            self.history.setdefault(item.peer_id.channel_id, []).append(item)
            updates.append(UpdateNewChannelMessage(message=item, pts=next(self._pts), pts_count=1))
        return updates

    async def deliver(self, *updates: Any) -> None:
        """Telegram pushing updates to the connected client (what Telethon's events.Raw hands over)."""
        for update in updates:
            for handler in self.handlers:
                await handler(update)

    async def post(self, *messages: Any) -> None:
        await self.deliver(*self.arrive(*messages))

    def drop(self, error: BaseException | None = None) -> None:
        """The connection is lost (Telethon ends `disconnected` with the error, if there was one)."""
        if self._disconnected is not None and not self._disconnected.done():
            if error is None:
                self._disconnected.set_result(None)
            else:
                self._disconnected.set_exception(error)

    @property
    def connected(self) -> bool:
        return self._disconnected is not None and not self._disconnected.done()

    # the Telethon client surface
    async def connect(self) -> None:
        self.connects += 1
        if self.fail_connect:
            raise self.fail_connect.pop(0)
        self._disconnected = asyncio.get_running_loop().create_future()

    async def disconnect(self) -> None:
        self.drop()

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """As Telethon's: a new shield of the connection's future on every access."""
        assert self._disconnected is not None
        return asyncio.shield(self._disconnected)

    async def is_user_authorized(self) -> bool:
        return self.authorized

    def add_event_handler(self, callback: Any, event: Any = None) -> None:
        self.handlers.append(callback)

    def _check(self, name: str) -> None:
        self.requests.append(name)
        if not self.connected:
            raise ConnectionError("not connected")
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def __call__(self, request: Any) -> Any:
        self._check(type(request).__name__)
        if isinstance(request, ResolveUsernameRequest):
            chat = self.by_username.get(request.username.lower())
            if chat is None:
                raise UsernameNotOccupiedError(request)
            return ResolvedPeer(peer=PeerChannel(chat.id), chats=[chat], users=[])
        if isinstance(request, JoinChannelRequest):
            self.joined.add(request.channel.channel_id)
            return Updates(updates=[], users=[], chats=[], date=WHEN, seq=0)
        if isinstance(request, CheckChatInviteRequest):
            chat = self.by_invite[request.hash]
            if chat.id in self.joined:
                return ChatInviteAlready(chat=chat)
            return ChatInvite(title=chat.title, photo=PhotoEmpty(id=0), participants_count=1, color=0, channel=True)
        if isinstance(request, ImportChatInviteRequest):
            chat = self.by_invite[request.hash]
            self.joined.add(chat.id)
            return Updates(updates=[], users=[], chats=[chat], date=WHEN, seq=0)
        raise NotImplementedError(type(request).__name__)

    async def get_input_entity(self, peer: Any) -> Any:
        self._check("get_input_entity")
        return InputPeerChannel(peer.channel_id, peer.channel_id * 7)

    async def get_messages(self, peer: Any, limit: int | None = None, *, min_id: int = 0,
                           reverse: bool = False) -> list[Any]:
        self._check("get_messages")
        messages = sorted(self.history.get(peer.channel_id, []), key=lambda m: m.id)
        if reverse:
            return [m for m in messages if m.id > min_id][:limit]
        return [m for m in reversed(messages) if m.id > min_id][:limit]


def peer_id_of(username: str) -> int:
    """The channel id the process tests' fake gives a username."""
    return zlib.crc32(username.lower().encode()) % 10**9 + 1


class ScriptedClient(FakeMonitorClient):
    """The process tests' Telegram: every username is a channel, and the messages the test appends to
    `incoming.jsonl` (in CARSCTL_HOME) arrive in their channels: each line is
    {"channel": name, "id": n, "text": ..., "photo": bool, "grouped_id": n|null, "live": bool}; a line with
    "live": false only lands in the channel's history (it is never pushed). The ids pushed are appended
    to `delivered.txt` once the monitor's handler has returned."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await super().connect()
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        seen = 0
        source = self.directory / "incoming.jsonl"
        while True:
            lines = source.read_text().splitlines() if source.exists() else []
            for line in lines[seen:]:
                item = json.loads(line)
                peer = peer_id_of(item["channel"])
                (update,) = self.arrive(message(peer, item["id"], item.get("text", ""), photo=item.get("photo", False),
                                                grouped_id=item.get("grouped_id")))
                if item.get("live", True) and self.handlers and self.connected:
                    await self.deliver(update)
                    with open(self.directory / "delivered.txt", "a") as out:
                        out.write(f"{item['id']}\n")
            seen = len(lines)
            await asyncio.sleep(0.05)


def make_client(settings: Any) -> FakeMonitorClient:
    """The process tests' client (MONITOR_CLIENT_FACTORY): see ScriptedClient."""
    client = ScriptedClient(Path(settings.home))

    class _AnyChannel(dict[str, Channel]):
        def get(self, key: str, default: Any = None) -> Channel:
            return channel(peer_id_of(key), key)

    client.by_username = _AnyChannel()
    return client
