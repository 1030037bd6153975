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

A send whose outcome is unknown (timeout, cancellation by the soft time limit, lost connection) is
still queued inside telethon: its sender packs every queued request without checking whether the caller
gave up, and re-queues everything pending after a reconnect. So such a send *abandons* the process's
event loop and client: the loop is never run again (nothing queued on it can go out) and a fresh loop
and client serve the next call. The publication service then keeps the intent's lease, so a request
that was already on the wire lands before any delivery verifies the channel.

A bot logs in (``ImportBotAuthorization``) once: its authorised session is kept in memory for the
process and in ``<CARSCTL_HOME>/telegram/`` (mode 0600, never printed) for the next processes, so
recycled pool children do not log in again (repeated logins earn long FLOOD_WAITs).

telethon is imported lazily: importing this module costs nothing until a client is needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
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
#: A user session's history scan without a message-id floor looks this far before the intent's time
#: (the database's clock) in Telegram's dates, so a skew between the two clocks cannot hide the post.
SCAN_MARGIN = timedelta(minutes=15)


@dataclass
class _ProcessRuntime:
    """This process's event loop, its lock (one coroutine at a time) and its shared client."""

    loop: asyncio.AbstractEventLoop
    lock: threading.RLock = field(default_factory=threading.RLock)
    client: Any = None
    client_key: tuple[Any, ...] | None = None
    logins: int = 0  # bot logins (ImportBotAuthorization) this process made: at most one
    bot_sessions: dict[str, str] = field(default_factory=dict)  # token digest -> authorised session
    peers: dict[int, tuple[int, int]] = field(default_factory=dict)  # marked channel id -> (id, hash)
    # Loops abandoned after a send of unknown outcome: never run again, kept so their pending tasks
    # are not garbage-collected with warnings.
    abandoned: list[asyncio.AbstractEventLoop] = field(default_factory=list)


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


def _run(runtime: _ProcessRuntime, make_coro: Callable[[], Awaitable[T]], *, sends: bool = False) -> T:
    """Run one call on the process's loop. A call that `sends` and is interrupted from outside (the
    soft time limit is raised by a signal handler) abandons the loop instead of cancelling on it:
    running the loop again, even to cancel, lets telethon's sender write the queued request."""
    with runtime.lock:
        loop = runtime.loop
        task = loop.create_task(make_coro())  # type: ignore[arg-type]
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                if sends:
                    abandon_loop(runtime)
                else:
                    task.cancel()
                    try:
                        loop.run_until_complete(task)
                    except BaseException:  # noqa: BLE001 - the cancellation or the call's own error
                        pass
            raise


def abandon_loop(runtime: _ProcessRuntime | None = None) -> None:
    """Drop the process's loop and client without running the loop again: whatever telethon still
    has queued on it is never sent. The next call gets a fresh loop and, if needed, a fresh client."""
    runtime = runtime or _runtime()
    with runtime.lock:
        old = runtime.loop
        runtime.loop = asyncio.new_event_loop()
        runtime.client, runtime.client_key = None, None
        runtime.abandoned.append(old)
        del runtime.abandoned[:-20]  # bounded: a very old abandoned loop may go
    logger.warning("telegram: a send of unknown outcome; the client and its loop are discarded (pid %s)",
                   os.getpid())


def _client_key(settings: Any) -> tuple[Any, ...]:
    return (settings.telegram_api_id, settings.telegram_api_hash, settings.telegram_session_string,
            settings.telegram_bot_token)


def validate_session_string(value: str | None) -> str | None:
    """Why `value` is not a usable telethon StringSession, or None when it is (or is unset).

    Catches what ``StringSession()`` raises for a malformed string, including base64 that decodes to
    the wrong length (``struct.error``), without connecting."""
    if not value:
        return None
    from telethon.sessions import StringSession

    try:
        session = StringSession(value)
    except Exception as exc:  # noqa: BLE001 - ValueError, binascii.Error, struct.error, ...
        return f"not a telethon StringSession ({type(exc).__name__}: {exc})"
    if session.auth_key is None or not session.server_address:
        return "not a telethon StringSession (no authorisation key or data centre)"
    return None


def session_states(settings: Any) -> dict[str, str]:
    """Each session string that is set, by variable: "valid" or "invalid: <why>" (never the value)."""
    states = {}
    for name in ("TELEGRAM_SESSION_STRING", "TELEGRAM_MONITOR_SESSION_STRING"):
        value = getattr(settings, name.lower(), None)
        if value:
            problem = validate_session_string(value)
            states[name] = f"invalid: {problem}" if problem else "valid"
    return states


def _bot_session_file(settings: Any) -> Path | None:
    home = getattr(settings, "home", None)
    token = getattr(settings, "telegram_bot_token", None)
    if home is None or not token:
        return None
    digest = hashlib.sha256(str(token).encode()).hexdigest()[:16]
    return Path(home) / "telegram" / f"bot-{digest}.session"


def _saved_bot_session(settings: Any, runtime: _ProcessRuntime) -> str | None:
    digest = hashlib.sha256(str(settings.telegram_bot_token).encode()).hexdigest()
    if digest in runtime.bot_sessions:
        return runtime.bot_sessions[digest]
    path = _bot_session_file(settings)
    try:
        saved = path.read_text(encoding="ascii").strip() if path is not None else ""
    except OSError:
        return None
    return saved if saved and validate_session_string(saved) is None else None


def _keep_bot_session(settings: Any, runtime: _ProcessRuntime, session_string: str) -> None:
    runtime.bot_sessions[hashlib.sha256(str(settings.telegram_bot_token).encode()).hexdigest()] = session_string
    path = _bot_session_file(settings)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(session_string)
        os.replace(path.with_suffix(".tmp"), path)
    except OSError:  # the in-process copy still saves the next logins of this process
        logger.warning("cannot keep the bot session under %s", path.parent, exc_info=True)


def process_client(settings: Any, runtime: _ProcessRuntime | None = None) -> Any:
    """This process's connected telethon client for `settings` (created and connected on first use).

    Raises :class:`NotConfigured` (permanent, explained) when the client cannot even be built: missing
    credentials, a malformed or unauthorised session string."""
    runtime = runtime or _runtime()
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
    if session_string:
        problem = validate_session_string(session_string)
        if problem:
            raise NotConfigured(f"TELEGRAM_SESSION_STRING is invalid: {problem}; create it again")
    saved_bot = None if session_string else _saved_bot_session(settings, runtime)

    def build() -> Any:
        from telethon import TelegramClient
        from telethon.sessions import StringSession

        try:
            return TelegramClient(
                StringSession(session_string or saved_bot or None), int(api_id), api_hash,
                # FloodWait must reach the task (which retries after the delay) instead of blocking the
                # worker process in a sleep; telethon would sleep for anything under 60 s by default.
                flood_sleep_threshold=0, request_retries=2, connection_retries=2, timeout=10,
                receive_updates=False,
            )
        except Exception as exc:  # noqa: BLE001 - any construction error is a configuration problem
            raise NotConfigured(f"cannot create the Telegram client ({type(exc).__name__}: {exc}); "
                                "check TELEGRAM_API_ID, TELEGRAM_API_HASH and the session") from None

    async def connect() -> Any:
        client = build()
        await asyncio.wait_for(client.connect(), CALL_TIMEOUT)
        if session_string:
            if not await client.is_user_authorized():
                await client.disconnect()
                raise NotConfigured("TELEGRAM_SESSION_STRING is not an authorised session (log in again)")
        elif not (saved_bot and await client.is_user_authorized()):
            if runtime.logins >= 1:
                await client.disconnect()
                raise NotConfigured("the bot's session was lost after this process logged in once; "
                                    "not logging in again (repeated bot logins earn long FLOOD_WAITs)")
            runtime.logins += 1
            await asyncio.wait_for(client.start(bot_token=bot_token), CALL_TIMEOUT)
            _keep_bot_session(settings, runtime, client.session.save())
        return client

    try:
        client = _run(runtime, connect)
    except CarsBotError:
        raise
    except Exception as exc:
        mapped = map_telegram_error(exc, attempted=False)
        if mapped is None:
            raise NotConfigured(f"cannot start the Telegram client ({type(exc).__name__}: {exc})") from exc
        raise mapped from exc
    if runtime.client is not None:
        close_process_client(runtime)
    runtime.client, runtime.client_key = client, key
    logger.info("telegram client connected (pid %s, %s)", os.getpid(), "user session" if session_string else "bot")
    return client


def close_process_client(runtime: _ProcessRuntime | None = None) -> None:
    """Disconnect this process's client (worker process shutdown, tests)."""
    runtime = runtime or _runtimes.get(os.getpid())
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
    if isinstance(exc, ValueError) and _PEER_NOT_FOUND.search(str(exc)):
        # telethon: 'No user has "x" as username', 'Cannot find any entity corresponding to "x"',
        # 'Could not find the input entity for ...': the channel or user does not exist (or is unknown
        # to this session). Retrying cannot fix it.
        return PermanentError(f"Telegram peer not found: {exc}")
    return None


_PEER_NOT_FOUND = re.compile(r"entity|no user has|as username|invite hash|not a valid username|"
                             r"cannot get entity|not among this account's dialogs", re.IGNORECASE)


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed send may still reach (or have reached) Telegram: anything but Telegram's own
    answer (an RPC error) or a failure raised before sending (a ValueError resolving the peer)."""
    from telethon import errors

    return not isinstance(exc, (errors.RPCError, ValueError))


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


PeerStore = Callable[[int], "tuple[int, int] | None"]


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
