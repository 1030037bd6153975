"""The monitor: one Telethon client listening to the active source channels.

- The channel list comes from the database (the Sheets sync keeps it current) and is read again every
  `interval` seconds: a new channel is resolved once (the peer is kept in `monitor_channels`), joined
  and listened to; a deactivated one is dropped. A channel that cannot be resolved is retried later,
  less and less often (never a request per channel per minute).
- Each new channel message goes through one path, live or caught up: service messages and messages
  without text or media are skipped; an album (`grouped_id`) is held until its last item (the next
  message of the channel, or `album_wait` seconds of quiet) and stored as one post; everything else
  is one post. Storing goes through :func:`cars_bot.ingest.ingest_post`, de-duplicated by the
  database and dispatched exactly once, and moves the channel's position forward in the same
  transaction that records the dispatch.
- Catch-up: on start, after every reconnect, and every `catch_up_every` refreshes, each channel's
  messages after its stored position are read and go through the same path (a channel seen for the
  first time starts at its newest message: nothing is back-filled).
- The database runs in one worker thread, never on the event loop. Telegram requests go through
  :class:`~cars_bot.monitor.limiter.TelegramLimiter` (FloodWait honoured, network errors backed off).
- Stop (SIGTERM): new messages are left for the next catch-up, the message in hand is finished, an
  album in hand is completed from the channel's history and stored, then the client disconnects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from cars_bot.ingest import IngestedPost, Send
from cars_bot.monitor import store
from cars_bot.monitor.channel_refs import RefKind, parse_channel_ref
from cars_bot.monitor.heartbeat import ListenState, MonitorHeartbeat
from cars_bot.monitor.limiter import Sleep, TelegramLimiter, backoff_delay, is_network_error
from cars_bot.monitor.messages import Incoming, incoming, message_channel_id, source_post
from cars_bot.monitor.resolver import input_peer, resolve_channel

logger = logging.getLogger("cars_bot.monitor")
T = TypeVar("T")

#: How long a failed channel waits before the next try, at most (doubling from the refresh interval).
MAX_RETRY_SECONDS = 6 * 3600


class NotAuthorized(RuntimeError):
    """The monitor's session is not logged in (create TELEGRAM_MONITOR_SESSION_STRING again)."""


@dataclass
class Listened:
    """A channel the monitor listens to."""

    channel_id: int
    ref: str
    peer_id: int
    access_hash: int | None
    source: str  # how the publisher names it: "@name" or "-100..."
    link_base: str  # https://t.me/name or https://t.me/c/<id>
    last_message_id: int


@dataclass
class Album:
    """An album in hand: its parts so far and the timer that stores it after a quiet moment."""

    grouped_id: int
    parts: list[Incoming] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


@dataclass
class Failure:
    ref: str
    error: str
    tries: int
    retry_at: float


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Monitor:
    """See the module docstring. `client` is a Telethon client (or a fake with the same methods)."""

    def __init__(self, client: Any, *, interval: float = 60.0, limiter: TelegramLimiter | None = None,
                 album_wait: float = 1.5, catch_up_every: int = 10, batch: int = 100, catch_up_limit: int = 2000,
                 send: Send | None = None, database_url: str | None = None,
                 heartbeat: Callable[[MonitorHeartbeat], None] | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, reconnect_base: float = 1.0) -> None:
        self.client = client
        self.interval = interval
        self.limiter = limiter or TelegramLimiter()
        self.album_wait = album_wait
        self.catch_up_every = catch_up_every
        self.batch = batch
        self.catch_up_limit = catch_up_limit
        self.send = send
        self.database_url = database_url
        self.heartbeat = heartbeat
        self.sleep = sleep
        self.clock = clock
        self.reconnect_base = reconnect_base
        self.listened: dict[int, Listened] = {}  # by peer id
        self.failed: dict[int, Failure] = {}  # by channel row id
        self.albums: dict[int, Album] = {}  # by peer id
        self._locks: dict[int, asyncio.Lock] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-db")
        self._closing = False
        self._handler_added = False
        self.beat = MonitorHeartbeat(pid=os.getpid(), state=ListenState.CONNECTING, updated_at=_now_iso(),
                                     interval=int(interval))

    # the database, in the worker thread --------------------------------------------------------
    async def _db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = partial(function, *args, database_url=self.database_url, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _lock(self, peer_id: int) -> asyncio.Lock:
        return self._locks.setdefault(peer_id, asyncio.Lock())

    async def _report(self, state: ListenState | None = None, **changes: Any) -> None:
        self.beat = replace(self.beat, state=state or self.beat.state, updated_at=_now_iso(),
                            channels=tuple(sorted(item.ref for item in self.listened.values())),
                            failed={f.ref: f.error for f in self.failed.values()},
                            flood_waits=self.limiter.flood_waits, **changes)
        if self.heartbeat is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.heartbeat, self.beat)

    # running -------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, listen and catch up until `stop` is set; reconnect with backoff when the
        connection drops. NotAuthorized ends it at once."""
        attempt = 0
        try:
            while not stop.is_set():
                try:
                    if not await _unless_stopped(stop, self.start()):
                        break
                    attempt = 0
                    await self._listen(stop)
                except NotAuthorized:
                    raise
                except Exception as error:
                    if not is_network_error(error):
                        raise
                    logger.warning("connection lost: %s: %s", type(error).__name__, error)
                    await self._report(error=f"{type(error).__name__}: {error}")
                if stop.is_set():
                    break
                delay = backoff_delay(attempt, base=self.reconnect_base)
                attempt += 1
                await self._report(ListenState.RECONNECTING)
                logger.info("reconnecting in %.1fs", delay)
                await _wait_for(stop, self.sleep(delay))
        finally:
            await self.shutdown()

    async def start(self) -> None:
        """Connect, register the handler, read the channels and catch up."""
        from telethon import events

        await self._report(ListenState.CONNECTING)
        await self.limiter.call(self.client.connect, "connect")
        if not await self.client.is_user_authorized():
            raise NotAuthorized("the monitor's session is not authorised: create TELEGRAM_MONITOR_SESSION_STRING "
                                "again")
        if not self._handler_added:
            self.client.add_event_handler(self.on_update, events.Raw)
            self._handler_added = True
        await self.refresh(catch_up_new=False)
        await self.catch_up_all()
        logger.info("listening to %d channel(s)", len(self.listened))
        await self._report(ListenState.LISTENING, error=None)

    async def _listen(self, stop: asyncio.Event) -> None:
        """Refresh the channels every interval (and catch up every few) until stopped or disconnected."""
        ticks = 0
        while not stop.is_set():
            disconnected = self.client.disconnected  # Telethon: a fresh shield of the sender's future
            await _wait_for(stop, self.sleep(self.interval), disconnected)
            if stop.is_set():
                return
            if disconnected.done() and not disconnected.cancelled():  # cancelled: by _wait_for, still connected
                error = disconnected.exception()
                raise ConnectionError(f"disconnected from Telegram{f': {error}' if error else ''}")
            ticks += 1
            try:
                if not await _unless_stopped(stop, self._tick(ticks)):
                    return
            except Exception as error:
                if is_network_error(error):
                    raise
                # The database away for a moment must not end the monitor: the next tick tries again.
                logger.warning("refresh failed: %s: %s", type(error).__name__, error)
                await self._report(error=f"{type(error).__name__}: {error}")
                continue
            await self._report(error=None)

    async def _tick(self, ticks: int) -> None:
        await self.refresh()
        if self.catch_up_every and ticks % self.catch_up_every == 0:
            await self.catch_up_all()

    # the channel list --------------------------------------------------------------------------
    async def refresh(self, *, catch_up_new: bool = True) -> None:
        """Follow the active channels: drop the deactivated (or changed) ones, resolve and add new ones."""
        rows = await self._db(store.active_channels)
        wanted = {row.channel_id: row for row in rows}
        for peer_id, item in list(self.listened.items()):
            row = wanted.get(item.channel_id)
            if row is None or row.ref != item.ref:
                async with self._lock(peer_id):
                    await self._flush(item)
                    self.listened.pop(peer_id, None)
                logger.info("dropped %s", item.ref)
        known = {item.channel_id for item in self.listened.values()}
        added = []
        for row in rows:
            if row.channel_id in known:
                continue
            failure = self.failed.get(row.channel_id)
            if failure is not None and failure.ref == row.ref and failure.retry_at > self.clock():
                continue
            item = await self._resolve(row)
            if item is not None:
                added.append(item)
        for item in added:
            self.listened[item.peer_id] = item
            logger.info("listening to %s (peer %s)", item.ref, item.peer_id)
            if catch_up_new:
                await self.catch_up(item)
        self.failed = {k: v for k, v in self.failed.items() if k in wanted}

    async def _resolve(self, row: store.WatchedChannel) -> Listened | None:
        try:
            ref = parse_channel_ref(row.ref)
            peer_id, access_hash = row.peer_id, row.access_hash
            if peer_id is None:
                peer = await resolve_channel(self.client, ref, self.limiter)
                peer_id, access_hash = peer.peer_id, peer.access_hash
                await self._db(store.save_peer, row.channel_id, row.ref, peer_id, access_hash)
        except Exception as error:  # noqa: BLE001 - recorded; the channel is tried again later
            tries = (self.failed[row.channel_id].tries + 1) if row.channel_id in self.failed else 1
            delay = min(MAX_RETRY_SECONDS, self.interval * 2 ** (tries - 1))
            message = f"{type(error).__name__}: {error}"
            self.failed[row.channel_id] = Failure(row.ref, message, tries, self.clock() + delay)
            logger.warning("cannot listen to %s: %s (next try in %.0fs)", row.ref, message, delay)
            await self._db(store.save_error, row.channel_id, message)
            return None
        self.failed.pop(row.channel_id, None)
        public = ref.kind is RefKind.USERNAME
        return Listened(channel_id=row.channel_id, ref=row.ref, peer_id=peer_id, access_hash=access_hash,
                        source=f"@{ref.value}" if public else f"-100{peer_id}",
                        link_base=f"https://t.me/{ref.value}" if public else f"https://t.me/c/{peer_id}",
                        last_message_id=row.last_message_id)

    # messages ----------------------------------------------------------------------------------
    async def on_update(self, update: Any) -> None:
        """The raw-update handler: new channel messages of a listened channel go to `take`."""
        from telethon.tl.types import UpdateNewChannelMessage

        if self._closing or not isinstance(update, UpdateNewChannelMessage):
            return
        item = self.listened.get(message_channel_id(update.message) or 0)
        if item is None:
            return
        async with self._lock(item.peer_id):
            if not self._closing:
                await self.take(item, update.message)

    async def take(self, item: Listened, message: Any) -> None:
        """One message of a channel (its lock held): skip, add to the album in hand, or store."""
        part = incoming(message)
        album = self.albums.get(item.peer_id)
        if album is not None and (part is None or part.grouped_id != album.grouped_id):
            await self._flush(item)
        if part is None:
            await self._db(store.save_position, item.channel_id, message.id, getattr(message, "date", None))
            item.last_message_id = max(item.last_message_id, message.id)
            return
        if part.grouped_id:
            album = self.albums.setdefault(item.peer_id, Album(part.grouped_id))
            album.parts.append(part)
            if album.timer is not None:
                album.timer.cancel()
            album.timer = asyncio.get_running_loop().call_later(self.album_wait, self._album_quiet, item,
                                                                 part.grouped_id)
            return
        await self._store(item, [part])

    def _album_quiet(self, item: Listened, grouped_id: int) -> None:
        task = asyncio.ensure_future(self._flush_album(item, grouped_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _flush_album(self, item: Listened, grouped_id: int) -> None:
        async with self._lock(item.peer_id):
            album = self.albums.get(item.peer_id)
            if album is not None and album.grouped_id == grouped_id:
                await self._flush(item)

    async def _flush(self, item: Listened) -> None:
        album = self.albums.pop(item.peer_id, None)
        if album is None:
            return
        if album.timer is not None:
            album.timer.cancel()
        await self._store(item, album.parts)

    async def _store(self, item: Listened, parts: list[Incoming]) -> IngestedPost | None:
        post = source_post(parts, item.source)
        try:
            result = await self._db(store.store_source_post, item.channel_id, post,
                                    f"{item.link_base}/{post.message_id}", send=self.send)
        except Exception:
            # Not stored, position unchanged: the next catch-up brings the message again.
            logger.exception("could not store message %s of %s", post.message_id, item.ref)
            return None
        item.last_message_id = max(item.last_message_id, post.last_id)
        stamp = post.date.isoformat() if post.date else _now_iso()
        if result.created:
            logger.info("stored post %s from %s message %s (%d media)", result.post_id, item.ref,
                        post.message_id, len(post.media))
            self.beat = replace(self.beat, stored=self.beat.stored + 1, last_message_at=stamp)
        else:
            self.beat = replace(self.beat, duplicates=self.beat.duplicates + 1, last_message_at=stamp)
        return result

    # catching up -------------------------------------------------------------------------------
    async def catch_up_all(self) -> None:
        """Catch up every listened channel (see `catch_up`)."""
        for item in list(self.listened.values()):
            try:
                await self.catch_up(item)
            except Exception as error:
                if is_network_error(error):
                    raise
                # One channel that cannot be read (banned, made private) does not hold up the others.
                logger.warning("cannot catch up %s: %s: %s", item.ref, type(error).__name__, error)
                await self._db(store.save_error, item.channel_id, f"{type(error).__name__}: {error}")
        await self._report(last_catch_up_at=_now_iso())

    async def catch_up(self, item: Listened) -> None:
        """The channel's messages after its position, through `take` (a trailing album stays in hand
        for the live messages that complete it). A channel never read starts at its newest message."""
        peer = input_peer(item.peer_id, item.access_hash)
        async with self._lock(item.peer_id):
            if item.last_message_id == 0:
                newest = await self.limiter.call(lambda: self.client.get_messages(peer, limit=1), f"read {item.ref}")
                if newest:
                    item.last_message_id = max(m.id for m in newest)
                    await self._db(store.save_position, item.channel_id, item.last_message_id)
                return
            seen = 0
            after = item.last_message_id
            while seen < self.catch_up_limit:
                batch = await self.limiter.call(
                    partial(self.client.get_messages, peer, min_id=after, limit=self.batch, reverse=True),
                    f"catch up {item.ref}")
                messages = sorted((m for m in batch or [] if m is not None and m.id > after), key=lambda m: m.id)
                for message in messages:
                    if self._closing:
                        return
                    await self.take(item, message)
                if not messages:
                    break
                seen += len(messages)
                after = messages[-1].id
                if len(batch) < self.batch:
                    break
            if seen:
                logger.info("caught up %d message(s) of %s", seen, item.ref)
            if seen >= self.catch_up_limit:
                logger.warning("catch-up of %s stopped after %d messages; the rest follows next time",
                               item.ref, seen)

    # stopping ----------------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Finish the message in hand, complete and store the albums in hand, disconnect."""
        if self._closing:
            return
        self._closing = True
        await self._report(ListenState.STOPPING)
        for task in list(self._pending):
            await asyncio.gather(task, return_exceptions=True)
        for peer_id, item in list(self.listened.items()):
            async with self._lock(peer_id):  # waits for the message in hand
                album = self.albums.get(peer_id)
                if album is None:
                    continue
                try:
                    await asyncio.wait_for(self._complete(item, album), timeout=15)
                except Exception as error:  # noqa: BLE001 - left for the catch-up at the next start
                    self.albums.pop(peer_id, None)
                    logger.warning("album %s of %s left for the next start's catch-up: %s", album.grouped_id,
                                   item.ref, error)
                    continue
                await self._flush(item)
        try:
            await self.client.disconnect()
        except Exception as error:  # noqa: BLE001 - we are leaving anyway
            logger.warning("disconnect: %s", error)
        await self._report(ListenState.STOPPED)
        self._executor.shutdown(wait=True)
        logger.info("stopped")

    async def _complete(self, item: Listened, album: Album) -> None:
        """Add the album's parts that arrived in the channel but not yet here."""
        last = max(p.message_id for p in album.parts)
        peer = input_peer(item.peer_id, item.access_hash)
        later = await self.limiter.call(partial(self.client.get_messages, peer, min_id=last, limit=10, reverse=True),
                                        f"complete album of {item.ref}")
        for message in sorted((m for m in later or [] if m is not None), key=lambda m: m.id):
            part = incoming(message)
            if part is None or part.grouped_id != album.grouped_id:
                break
            album.parts.append(part)


async def _unless_stopped(stop: asyncio.Event, work: Any) -> bool:
    """Run `work` unless `stop` is set first, then cancel it (a FloodWait of an hour must not hold up a
    SIGTERM; the database call in hand still finishes in its thread). True when `work` completed."""
    task = asyncio.ensure_future(work)
    await _wait_for(stop, task)
    if not task.done():
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()  # its error, if any
    return True


async def _wait_for(stop: asyncio.Event, *others: Any) -> None:
    """Until `stop` is set or one of `others` (awaitables or futures) is done; the rest is cancelled
    (the client's `disconnected` is a shield: cancelling it leaves the connection's own future alone)."""
    waiter = asyncio.ensure_future(stop.wait())
    futures = [asyncio.ensure_future(other) for other in others]
    try:
        await asyncio.wait([waiter, *futures], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (waiter, *futures):
            if not future.done():
                future.cancel()
