"""The telethon adapter: one connected client per worker process, on one private event loop.

The prior system built a fresh client (a new MTProto handshake) for every post and ran `asyncio.run`
in every task (prior-system.md section 10, defects 14 and 12). Here a worker process creates its
client once, connects it once and reuses it; every call runs with `loop.run_until_complete` on the
process's own loop. The cache is keyed by pid, so a forked pool process never touches its parent's
connection.

Errors are mapped to the task layer's vocabulary (:func:`map_telegram_error`): FloodWait and slow mode
become :class:`~cars_bot.publishing.delivery.NotSent` (a TransientError with Telegram's `retry_after`);
connection trouble, timeouts and 5xx are transient; 400/401/403/404/406 RPC errors (write forbidden,
private channel, message too long, revoked session ...) are permanent.

telethon is imported lazily: importing this module costs nothing until a client is needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cars_bot.db.models import PublicationStatus
from cars_bot.errors import CarsBotError, NotConfigured, PermanentError, TransientError
from cars_bot.publishing.delivery import MediaRef, NotSent
from cars_bot.publishing.post_template import MAX_ALBUM_ITEMS

logger = logging.getLogger("cars_bot.publishing.telegram")

T = TypeVar("T")

#: Seconds one Telegram call may take before it counts as a (transient) timeout. Well under the
#: task's 60 s soft limit, so the task can still record what happened.
CALL_TIMEOUT = 25.0
#: How many channel messages `find_published` looks at before it gives up ("cannot tell").
SCAN_LIMIT = 500
_PROBE_CHUNK = 100


@dataclass
class _ProcessRuntime:
    """This process's event loop, its lock (one coroutine at a time) and its shared client."""

    loop: asyncio.AbstractEventLoop
    lock: threading.RLock = field(default_factory=threading.RLock)
    client: Any = None
    client_key: tuple[Any, ...] | None = None


_runtimes: dict[int, _ProcessRuntime] = {}
_runtimes_lock = threading.Lock()


def _runtime() -> _ProcessRuntime:
    pid = os.getpid()
    with _runtimes_lock:
        runtime = _runtimes.get(pid)
        if runtime is None:
            # A forked child inherits its parent's entries; they are never used (other pid).
            runtime = _ProcessRuntime(loop=asyncio.new_event_loop())
            _runtimes[pid] = runtime
        return runtime


def _run(runtime: _ProcessRuntime, make_coro: Callable[[], Awaitable[T]]) -> T:
    with runtime.lock:
        task = runtime.loop.create_task(make_coro())  # type: ignore[arg-type]
        try:
            return runtime.loop.run_until_complete(task)
        except BaseException:
            # Interrupted from outside (the soft time limit is raised by a signal handler): cancel the
            # call, or it would resume, and maybe send, the next time this loop runs.
            if not task.done():
                task.cancel()
                try:
                    runtime.loop.run_until_complete(task)
                except BaseException:  # noqa: BLE001 - the cancellation or the call's own error
                    pass
            raise


def _client_key(settings: Any) -> tuple[Any, ...]:
    return (settings.telegram_api_id, settings.telegram_api_hash, settings.telegram_session_string,
            settings.telegram_bot_token)


def process_client(settings: Any) -> Any:
    """This process's connected telethon client for `settings` (created and connected on first use)."""
    runtime = _runtime()
    key = _client_key(settings)
    if runtime.client is not None and runtime.client_key == key:
        return runtime.client
    api_id, api_hash = settings.telegram_api_id, settings.telegram_api_hash
    session_string, bot_token = settings.telegram_session_string, settings.telegram_bot_token
    if not (api_id and api_hash) or not (session_string or bot_token):
        raise NotConfigured(
            "Telegram needs TELEGRAM_API_ID and TELEGRAM_API_HASH plus TELEGRAM_SESSION_STRING or "
            "TELEGRAM_BOT_TOKEN"
        )

    async def connect() -> Any:
        from telethon import TelegramClient
        from telethon.sessions import StringSession

        try:
            session = StringSession(session_string or None)
        except ValueError:
            raise NotConfigured("TELEGRAM_SESSION_STRING is not a valid telethon StringSession") from None
        client = TelegramClient(
            session, int(api_id), api_hash,
            # FloodWait must reach the task (which retries after the delay) instead of blocking the
            # worker process in a sleep; telethon would sleep for anything under 60 s by default.
            flood_sleep_threshold=0, request_retries=2, connection_retries=2, timeout=10,
            receive_updates=False,
        )
        await asyncio.wait_for(client.connect(), CALL_TIMEOUT)
        if not session_string:
            await asyncio.wait_for(client.start(bot_token=bot_token), CALL_TIMEOUT)
        elif not await client.is_user_authorized():
            await client.disconnect()
            raise NotConfigured("TELEGRAM_SESSION_STRING is not an authorised session (log in again)")
        return client

    try:
        client = _run(runtime, connect)
    except CarsBotError:
        raise
    except Exception as exc:
        mapped = map_telegram_error(exc, attempted=False)
        if mapped is None:
            raise
        raise mapped from exc
    if runtime.client is not None:
        close_process_client()
    runtime.client, runtime.client_key = client, key
    logger.info("telegram client connected (pid %s, %s)", os.getpid(), "user session" if session_string else "bot")
    return client


def close_process_client() -> None:
    """Disconnect this process's client (worker shutdown, tests)."""
    runtime = _runtimes.get(os.getpid())
    if runtime is None or runtime.client is None:
        return
    client, runtime.client, runtime.client_key = runtime.client, None, None
    try:
        _run(runtime, client.disconnect)
    except Exception:  # a dead connection is closed anyway
        logger.debug("telegram disconnect failed", exc_info=True)


def map_telegram_error(exc: BaseException, *, attempted: bool = True) -> CarsBotError | None:
    """The task-layer error for a telethon/network error, or None for an unrelated exception.

    `attempted` says whether the failing call may have posted something: a failure before the send
    (resolving the channel, fetching source media) is :class:`NotSent` when transient.
    """
    from telethon import errors

    name = type(exc).__name__
    transient: type[TransientError] = TransientError if attempted else NotSent
    if isinstance(exc, errors.RPCError):
        seconds = getattr(exc, "seconds", None)
        if isinstance(exc, errors.FloodError) or seconds is not None:
            # FloodWait, slow mode, premium flood: Telegram refused and did nothing.
            return NotSent(f"Telegram asks to wait {seconds}s ({name})",
                           retry_after=float(seconds) if seconds is not None else None)
        if isinstance(exc, errors.PeerFloodError):
            return NotSent(f"Telegram limits this account for now ({name})", retry_after=600.0)
        code = getattr(exc, "code", None)
        if isinstance(exc, (errors.ServerError, errors.TimedOutError, errors.InvalidDCError)) or (
            isinstance(code, int) and code >= 500
        ):
            return transient(f"Telegram server error ({name}: {exc})")
        return PermanentError(f"Telegram refused the request ({name}: {exc})")
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, OSError,
                        asyncio.IncompleteReadError)):
        return transient(f"Telegram unreachable ({name}: {exc})")
    if isinstance(exc, ValueError) and "entity" in str(exc).lower():
        # telethon: "Could not find the input entity for ..." - an unknown channel or user.
        return PermanentError(f"Telegram peer not found ({exc})")
    return None


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


class TelegramPublisher:
    """Publishes to the target channel through telethon (see the module docstring).

    `client` replaces the process client (tests pass a fake with the coroutine methods
    ``send_message``, ``send_file`` and ``get_messages``).
    """

    kind = "telegram"
    publication_status = PublicationStatus.SENT

    def __init__(self, settings: Any, client: Any = None, *, call_timeout: float = CALL_TIMEOUT,
                 scan_limit: int = SCAN_LIMIT) -> None:
        self.settings = settings
        self.channel: str = settings.telegram_channel or ""
        self.bot_username: str | None = getattr(settings, "telegram_bot_username", None)
        self.is_bot = not getattr(settings, "telegram_session_string", None)
        self._client = client
        self._runtime = _runtime()
        self.call_timeout = call_timeout
        self.scan_limit = scan_limit

    @property
    def client(self) -> Any:
        """The injected client, or this process's shared connected client."""
        if self._client is None:
            return process_client(self.settings)
        return self._client

    def _call(self, make_coro: Callable[[], Awaitable[T]], *, attempted: bool) -> T:
        async def timed() -> T:
            return await asyncio.wait_for(make_coro(), self.call_timeout)

        try:
            return _run(self._runtime, timed)
        except CarsBotError:
            raise
        except Exception as exc:
            mapped = map_telegram_error(exc, attempted=attempted)
            if mapped is None:
                raise
            raise mapped from exc

    # ------------------------------------------------------------------------------------------
    def send_post(self, channel: str, html: str, media_refs: list[MediaRef], *,
                  post_id: int | None = None) -> list[int]:
        """Send `html` as a text message (link previews off), or the referenced source messages'
        media re-sent as one album (at most 10) with `html` as the caption. Returns the message ids."""
        client = self.client
        peer = telegram_peer(channel)
        refs = list(media_refs)[:MAX_ALBUM_ITEMS]
        media: list[Any] = []
        if refs:
            try:
                media = self._call(lambda: self._fetch_media(client, refs), attempted=False)
            except PermanentError as exc:
                # The source is gone or private: the post still goes out, as text (never a raw copy).
                logger.warning("cannot fetch source media %s (%s); sending the text alone", refs, exc)

        async def send() -> list[int]:
            if not media:
                message = await client.send_message(peer, html, parse_mode="html", link_preview=False)
                return [message.id]
            if len(media) == 1:
                message = await client.send_file(peer, media[0], caption=html, parse_mode="html")
                return [message.id]
            # telethon puts a single caption on the album's first item
            messages = await client.send_file(peer, media, caption=html, parse_mode="html")
            return [m.id for m in messages]

        return self._call(send, attempted=True)

    async def _fetch_media(self, client: Any, refs: list[MediaRef]) -> list[Any]:
        by_channel: dict[str, list[int]] = {}
        for ref in refs:
            by_channel.setdefault(str(ref["channel"]), []).append(int(ref["message_id"]))
        media: list[Any] = []
        for source, ids in by_channel.items():
            messages = await client.get_messages(telegram_peer(source), ids=sorted(ids))
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

        [] when the post is certainly not in the channel, None when that cannot be told within
        :data:`SCAN_LIMIT` messages. With `after_id` (the highest id known to precede the send), or as
        a bot (bots may not read history), message ids after it are fetched by id until past the end
        of the channel; a user session reads the history back to `since`.
        """
        client = self.client
        peer = telegram_peer(channel)
        pattern = _contact_pattern(post_id)
        if after_id is not None or self.is_bot or since is None:
            return self._call(lambda: self._probe_ids(client, peer, pattern, after_id or 0), attempted=False)
        return self._call(lambda: self._scan_history(client, peer, pattern, since), attempted=False)

    async def _probe_ids(self, client: Any, peer: Any, pattern: re.Pattern[str], after_id: int) -> list[int] | None:
        start = after_id + 1
        while start <= after_id + self.scan_limit:
            ids = list(range(start, start + _PROBE_CHUNK))
            messages = [m for m in await client.get_messages(peer, ids=ids) if m is not None]
            if not messages:
                return []  # past the newest message: it is not there
            for message in messages:
                if _message_mentions(message, pattern):
                    return await self._album_of(client, peer, message, messages)
            start += _PROBE_CHUNK
        return None

    async def _scan_history(self, client: Any, peer: Any, pattern: re.Pattern[str],
                            since: datetime) -> list[int] | None:
        offset_id = 0
        seen = 0
        while seen < self.scan_limit:
            messages = await client.get_messages(peer, limit=_PROBE_CHUNK, offset_id=offset_id)
            messages = [m for m in messages if m is not None]
            if not messages:
                return []
            for message in messages:  # newest first
                if _message_mentions(message, pattern):
                    return await self._album_of(client, peer, message, messages)
                date = getattr(message, "date", None)
                if date is not None and date < since:
                    return []  # older than the intent: the post was never sent
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
