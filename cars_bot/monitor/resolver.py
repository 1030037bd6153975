"""Resolving a channel cell to a Telegram peer, once (the peer is then kept in the database), and
joining it: public channels with JoinChannel, invite links with ImportChatInvite. Every request goes
through the monitor's limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cars_bot.monitor.channel_refs import ChannelRef, RefKind
from cars_bot.monitor.limiter import TelegramLimiter


@dataclass(frozen=True, slots=True)
class ResolvedPeer:
    """A channel's bare id and access hash (None when only the session's cache knows it)."""

    peer_id: int
    access_hash: int | None
    title: str | None = None


class NotAChannel(ValueError):
    """The cell names a user, a bot or a group that is not a channel/supergroup."""


async def resolve_channel(client: Any, ref: ChannelRef, limiter: TelegramLimiter) -> ResolvedPeer:
    """The peer of `ref`, joined (public channels and invite links); Telethon's RPC errors propagate
    (UsernameNotOccupied, InviteHashExpired, ChannelPrivate ...)."""
    from telethon.tl.functions.channels import JoinChannelRequest
    from telethon.tl.functions.contacts import ResolveUsernameRequest
    from telethon.tl.functions.messages import CheckChatInviteRequest, ImportChatInviteRequest
    from telethon.tl.types import Channel, ChatInviteAlready, InputChannel, PeerChannel

    what = f"resolve {ref.value}"
    if ref.kind is RefKind.USERNAME:
        found = await limiter.call(lambda: client(ResolveUsernameRequest(ref.value)), what)
        peer_id = getattr(found.peer, "channel_id", None)
        chat = next((c for c in found.chats if isinstance(c, Channel) and c.id == peer_id), None)
        if chat is None:
            raise NotAChannel(f"@{ref.value} is not a channel")
        if chat.left:
            await limiter.call(lambda: client(JoinChannelRequest(InputChannel(chat.id, chat.access_hash or 0))),
                               f"join @{ref.value}")
        return ResolvedPeer(chat.id, chat.access_hash, chat.title)
    if ref.kind is RefKind.INVITE:
        invite = await limiter.call(lambda: client(CheckChatInviteRequest(ref.value)), what)
        if isinstance(invite, ChatInviteAlready):
            chat = invite.chat
        else:
            updates = await limiter.call(lambda: client(ImportChatInviteRequest(ref.value)), "join by invite link")
            chat = next((c for c in updates.chats if isinstance(c, Channel)), None)
        if not isinstance(chat, Channel):
            raise NotAChannel("the invite link does not lead to a channel")
        return ResolvedPeer(chat.id, chat.access_hash, chat.title)
    # a bare -100 id: only a channel this account has met is known (no join without a link)
    entity = await limiter.call(lambda: client.get_input_entity(PeerChannel(ref.channel_id)), what)
    return ResolvedPeer(ref.channel_id, getattr(entity, "access_hash", None))


def input_peer(peer_id: int, access_hash: int | None) -> Any:
    """The peer to pass to requests: with its access hash when known (no lookup), else by id."""
    from telethon.tl.types import InputPeerChannel, PeerChannel

    return InputPeerChannel(peer_id, access_hash) if access_hash is not None else PeerChannel(peer_id)
