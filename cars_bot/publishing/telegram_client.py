"""The process's telethon client: one connected client per worker process, on one private event loop,
its sessions, and the mapping of telethon's errors to the task layer's.

The prior system built a fresh client (a new MTProto handshake) for every post and ran `asyncio.run`
in every task (prior-system.md section 10, defects 14 and 12). Here a worker process creates its
client once, connects it once and reuses it; every call runs with `loop.run_until_complete` on the
process's own loop. The cache is keyed by pid, so a forked pool process never touches its parent's
connection; `worker_process_shutdown` closes it (cars_bot.tasks.publishing_tasks).

A send whose outcome is unknown (timeout, cancellation by the soft time limit, lost connection) is
still queued inside telethon: its sender packs every queued request without checking whether the caller
gave up, and re-queues everything pending after a reconnect. So such a send *abandons* the process's
event loop and client (:func:`abandon_loop`): the loop is never run again (nothing queued on it can go
out) and a fresh loop and client serve the next call.

A bot logs in (``ImportBotAuthorization``) once: its authorised session is kept in memory for the
process and in ``<CARSCTL_HOME>/telegram/`` (mode 0600, never printed) for the next processes, so
recycled pool children do not log in again (repeated logins earn long FLOOD_WAITs). A session string
is validated offline before use (:func:`validate_session_string`; doctor and config show use it too).

Errors are mapped to the task layer's vocabulary (:func:`map_telegram_error`): FloodWait and slow mode
become :class:`~cars_bot.publishing.delivery.NotSent` (a TransientError with Telegram's `retry_after`);
connection trouble, timeouts and 5xx are transient; 400/401/403/404/406 RPC errors (write forbidden,
private channel, message too long, revoked session ...) and a peer that does not exist are permanent.

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
from pathlib import Path
from typing import Any, TypeVar

from cars_bot.errors import CarsBotError, NotConfigured, PermanentError, TransientError
from cars_bot.publishing.delivery import NotSent

logger = logging.getLogger("cars_bot.publishing.telegram")

T = TypeVar("T")

#: Seconds one Telegram call may take before it counts as a (transient) timeout. Well under the
#: task's 60 s soft limit, so the task can still record what happened.
CALL_TIMEOUT = 25.0


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
        # The old client's socket is left to Telegram to drop: closing it means running telethon's
        # disconnect() on the old loop, which would let its sender write the queued request first.
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
