"""The telethon adapter: the publisher that sends posts and contacts and finds an earlier send.

Its client, loop and sessions live in :mod:`cars_bot.publishing.telegram_client` (one per process).
A send whose outcome is unknown abandons that loop and client before the publication service releases
the intent, and the service keeps the intent's lease, so a request already on the wire lands before any
delivery verifies the channel. Verifying compares Telegram's own message ids (the floor the service
recorded) or Telegram's dates, never a host's clock.

A fixed ``random_id`` per intent was looked into and is not used. Telegram de-duplicates a repeated
``random_id`` from the same sender (``RANDOM_ID_DUPLICATE``, which telethon 1.45 maps to a 500-class
ServerError, so it would look transient) and telethon's own resends after a reconnect reuse the request
object, hence the same id. But ``send_message``/``send_file`` draw a fresh ``random_id`` inside and take
none from the caller (using one means building ``SendMessageRequest``/``SendMultiMediaRequest`` by hand),
a duplicate answer carries no message id (the channel must be probed anyway), and Telegram documents no
window for which it remembers ids. The lease, the abandoned loop and the id floor close the windows
without it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cars_bot.db.models import PublicationStatus
from cars_bot.errors import CarsBotError, PermanentError
from cars_bot.publishing.delivery import MediaRef
from cars_bot.publishing.post_template import MAX_ALBUM_ITEMS
from cars_bot.publishing.telegram_client import (  # noqa: F401 - re-exported: the adapter's vocabulary
    CALL_TIMEOUT,
    _outcome_unknown,
    _ProcessRuntime,
    _run,
    _runtime,
    abandon_loop,
    close_process_client,
    map_telegram_error,
    process_client,
    session_states,
    validate_session_string,
)

logger = logging.getLogger("cars_bot.publishing.telegram")

T = TypeVar("T")

#: How many channel messages `find_published` looks at before it gives up ("cannot tell").
SCAN_LIMIT = 500
_PROBE_CHUNK = 100
#: A user session's history scan without a message-id floor looks this far before the intent's time
#: (the database's clock) in Telegram's dates, so a skew between the two clocks cannot hide the post.
SCAN_MARGIN = timedelta(minutes=15)


def telegram_peer(value: str | int) -> str | int:
    """A channel/user as telethon accepts it: "@name" stays a string, "-100123" becomes an int."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _contact_pattern(post_id: int) -> re.Pattern[str]:
    return re.compile(rf"start=contact_{int(post_id)}(?!\d)")


def _message_mentions(message: Any, pattern: re.Pattern[str]) -> bool:
    texts = [getattr(message, "message", None), getattr(message, "raw_text", None)]
    for entity in getattr(message, "entities", None) or []:
        texts.append(getattr(entity, "url", None))
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "rows", None) or []:
        for button in getattr(row, "buttons", None) or []:
            texts.append(getattr(button, "url", None))
    return any(isinstance(t, str) and pattern.search(t) for t in texts)


def _has_sendable_media(message: Any) -> bool:
    from telethon.tl import types

    return isinstance(getattr(message, "media", None), (types.MessageMediaPhoto, types.MessageMediaDocument))


#: telethon RPC errors that refuse the media of a send, not the post: the text alone may still go out.
_MEDIA_REFUSALS = ("ChatForwardsRestrictedError", "MediaInvalidError", "MediaEmptyError", "PhotoInvalidError",
                   "FileReferenceExpiredError", "FileReferenceInvalidError", "MediaCaptionTooLongError",
                   "GroupedMediaInvalidError", "MultiMediaTooLongError", "WebpageMediaEmptyError",
                   "PhotoInvalidDimensionsError", "ChatSendMediaForbiddenError", "ChatSendPhotosForbiddenError")


def _is_media_refusal(exc: BaseException) -> bool:
    from telethon import errors

    return isinstance(exc, errors.RPCError) and (
        type(exc).__name__ in _MEDIA_REFUSALS or "MEDIA" in str(getattr(exc, "message", "")).upper()
    )


PeerStore = Callable[[int], "tuple[int, int] | None"]  # a lookup; StoredPeers also has `remember`


class TelegramPublisher:
    """Publishes to the target channel through telethon (see the module docstring).

    `client` replaces the process client (tests pass a fake with the coroutine methods
    ``send_message``, ``send_file``, ``get_messages``, ``iter_dialogs`` and ``disconnect``);
    `runtime` replaces the process's loop (a test runs two "processes" in one). `peers` looks up the
    input peer (id, access hash) of a ``-100...`` channel kept in the database (a user session).
    """

    kind = "telegram"
    publication_status = PublicationStatus.SENT

    def __init__(self, settings: Any, client: Any = None, *, call_timeout: float = CALL_TIMEOUT,
                 scan_limit: int = SCAN_LIMIT, runtime: _ProcessRuntime | None = None,
                 peers: PeerStore | None = None) -> None:
        self.settings = settings
        self.channel: str = settings.telegram_channel or ""
        self.bot_username: str | None = getattr(settings, "telegram_bot_username", None)
        self.is_bot = not getattr(settings, "telegram_session_string", None)
        self._client = client
        self._runtime = runtime or _runtime()
        self.call_timeout = call_timeout
        self.scan_limit = scan_limit
        self.peers = peers

    @property
    def client(self) -> Any:
        """The injected client, or this process's shared connected client."""
        if self._client is None:
            return process_client(self.settings, self._runtime)
        return self._client

    def _call(self, make_coro: Callable[[], Awaitable[T]], *, attempted: bool) -> T:
        async def timed() -> T:
            return await asyncio.wait_for(make_coro(), self.call_timeout)

        try:
            return _run(self._runtime, timed, sends=attempted)
        except CarsBotError:
            raise
        except Exception as exc:
            if attempted and _outcome_unknown(exc):
                # Timed out or the connection broke while sending: telethon may still send it later
                # from this loop. Discard loop and client before the caller releases the intent.
                abandon_loop(self._runtime)
            mapped = map_telegram_error(exc, attempted=attempted)
            if mapped is None:
                raise
            raise mapped from exc

    # ------------------------------------------------------------------------------------------
    async def _input_peer(self, client: Any, value: str | int) -> Any:
        """What to address `value` as: a bot or an @name as is; a ``-100...`` id with a user session
        as its input peer (a StringSession caches no entities, and ``access_hash=0`` works for bots
        only): from this process's cache, the database, or, once, the account's dialogs."""
        peer = telegram_peer(value)
        if self.is_bot or not isinstance(peer, int) or peer > 0:
            return peer
        from telethon.tl import types

        if not str(peer).startswith("-100"):
            return peer  # a basic group's id works as is
        channel_id = int(str(peer)[4:])
        known = self._runtime.peers.get(peer) or (self.peers(peer) if self.peers is not None else None)
        if known is None:
            async for dialog in client.iter_dialogs():
                entity = getattr(dialog, "entity", None)
                if isinstance(entity, types.Channel) and entity.id == channel_id and entity.access_hash:
                    known = (int(entity.id), int(entity.access_hash))
                    break
            else:
                raise ValueError(f"cannot find the entity {peer}: the channel is not among this account's "
                                 "dialogs (join it, or set its @username instead)")
            remember = getattr(self.peers, "remember", None)
            if remember is not None:
                remember(peer, known[1])
        self._runtime.peers[peer] = known
        return types.InputPeerChannel(channel_id=known[0], access_hash=known[1])

    def resolved_peer(self, value: str | int) -> tuple[int, int] | None:
        """The (marked id, access hash) `value` was resolved to in this process, when it was."""
        peer = telegram_peer(value)
        known = self._runtime.peers.get(peer) if isinstance(peer, int) else None
        return (peer, known[1]) if known is not None else None

    def send_post(self, channel: str, html: str, media_refs: list[MediaRef], *,
                  post_id: int | None = None) -> list[int]:
        """Send `html` as a text message (link previews off), or the referenced source messages'
        media re-sent as one album (at most 10) with `html` as the caption. Returns the message ids.

        Media that cannot be fetched (source gone or private) or that Telegram refuses at send time
        (forwarding restricted, an invalid mixed album: a definite refusal, nothing was posted) leave
        the text alone, with its link, to be sent."""
        client = self.client
        refs = list(media_refs)[:MAX_ALBUM_ITEMS]
        media: list[Any] = []
        if refs:
            try:
                media = self._call(lambda: self._fetch_media(client, refs), attempted=False)
            except PermanentError as exc:
                # The source is gone or private: the post still goes out, as text (never a raw copy).
                logger.warning("cannot fetch source media %s (%s); sending the text alone", refs, exc)

        async def send(items: list[Any]) -> list[int]:
            peer = await self._input_peer(client, channel)
            if not items:
                message = await client.send_message(peer, html, parse_mode="html", link_preview=False)
                return [message.id]
            if len(items) == 1:
                message = await client.send_file(peer, items[0], caption=html, parse_mode="html")
                return [message.id]
            # telethon puts a single caption on the album's first item
            messages = await client.send_file(peer, items, caption=html, parse_mode="html")
            return [m.id for m in messages]

        try:
            return self._call(lambda: send(media), attempted=True)
        except PermanentError as exc:
            if not media or not _is_media_refusal(exc.__cause__ or exc):
                raise
            logger.warning("post %s: Telegram refused its media (%s); sending the text alone", post_id, exc)
        return self._call(lambda: send([]), attempted=True)

    async def _fetch_media(self, client: Any, refs: list[MediaRef]) -> list[Any]:
        by_channel: dict[str, list[int]] = {}
        for ref in refs:
            by_channel.setdefault(str(ref["channel"]), []).append(int(ref["message_id"]))
        media: list[Any] = []
        for source, ids in by_channel.items():
            messages = await client.get_messages(await self._input_peer(client, source), ids=sorted(ids))
            if not isinstance(messages, list):
                messages = list(messages) if messages is not None else []
            for message in messages:
                if message is not None and _has_sendable_media(message):
                    media.append(message.media)
        if refs and not media:
            logger.warning("source messages %s have no media any more; sending the text alone", refs)
        return media[:MAX_ALBUM_ITEMS]

    def send_message(self, recipient: str | int, html: str) -> int:
        """Send a private message (a seller contact) and return its id."""
        client = self.client
        peer = telegram_peer(recipient)

        async def send() -> int:
            message = await client.send_message(peer, html, parse_mode="html", link_preview=False)
            return int(message.id)

        return self._call(send, attempted=True)

    def find_published(self, channel: str, post_id: int, *, after_id: int | None = None,
                       since: datetime | None = None) -> list[int] | None:
        """Ids of the channel message(s) carrying this post's deep link ``start=contact_<post_id>``.

        [] when the post is certainly not in the channel, None when that cannot be told. Only
        Telegram's ids and dates are compared, never a host's clock:

        - `after_id` (the highest id confirmed before the intent, see the publication service): a bot
          fetches the ids after it until past the newest message; a user session reads the history
          back to it. Either way within :data:`SCAN_LIMIT` messages.
        - no `after_id`: a user session reads the history back to Telegram's dates older than `since`
          (the intent's time on the database's clock) minus :data:`SCAN_MARGIN`. A bot cannot read
          history: it probes ids from 1 and can find the post, but an empty stretch of ids proves
          nothing (the channel's first messages may be deleted): not found is None, never [].
        """
        client = self.client
        pattern = _contact_pattern(post_id)

        async def probe() -> list[int] | None:
            peer = await self._input_peer(client, channel)
            if self.is_bot or (after_id is None and since is None):
                return await self._probe_ids(client, peer, pattern, after_id)
            return await self._scan_history(client, peer, pattern, after_id, since)

        return self._call(probe, attempted=False)

    async def _probe_ids(self, client: Any, peer: Any, pattern: re.Pattern[str],
                         after_id: int | None) -> list[int] | None:
        floor = after_id or 0
        start = floor + 1
        while start <= floor + self.scan_limit:
            ids = list(range(start, start + _PROBE_CHUNK))
            messages = [m for m in await client.get_messages(peer, ids=ids) if m is not None]
            if not messages:
                # past the newest message: certain only above a known floor
                return [] if after_id is not None else None
            for message in messages:
                if _message_mentions(message, pattern):
                    return await self._album_of(client, peer, message, messages)
            start += _PROBE_CHUNK
        return None

    async def _scan_history(self, client: Any, peer: Any, pattern: re.Pattern[str], after_id: int | None,
                            since: datetime | None) -> list[int] | None:
        oldest = since - SCAN_MARGIN if since is not None else None
        offset_id = 0
        seen = 0
        while seen < self.scan_limit:
            messages = await client.get_messages(peer, limit=_PROBE_CHUNK, offset_id=offset_id)
            messages = [m for m in messages if m is not None]
            if not messages:
                return []  # the whole history was read
            for message in messages:  # newest first
                if after_id is not None and message.id <= after_id:
                    return []  # back at the floor: the post was never sent
                if _message_mentions(message, pattern):
                    return await self._album_of(client, peer, message, messages)
                date = getattr(message, "date", None)
                if after_id is None and oldest is not None and date is not None and date < oldest:
                    return []  # older than the intent (Telegram's dates, with a margin)
            seen += len(messages)
            offset_id = messages[-1].id
        return None

    async def _album_of(self, client: Any, peer: Any, message: Any, seen: list[Any]) -> list[int]:
        group = getattr(message, "grouped_id", None)
        if not group:
            return [int(message.id)]
        ids = set(range(message.id - MAX_ALBUM_ITEMS + 1, message.id + MAX_ALBUM_ITEMS))
        known = {m.id: m for m in seen if m.id in ids}
        missing = sorted(i for i in ids if i not in known and i > 0)
        if missing:
            for m in await client.get_messages(peer, ids=missing):
                if m is not None:
                    known[m.id] = m
        return sorted(int(i) for i, m in known.items() if getattr(m, "grouped_id", None) == group)
