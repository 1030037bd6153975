"""The outbox: where posts go when Telegram is not configured (the embedded default).

Each post is stored in the `outbox` table and written where a person can read it: one
`<post_id>.html` file per post (open it in a browser) and an `outbox.log` with a header line per
entry, both under `<CARSCTL_HOME>/outbox/`. The synthetic "message id" is the outbox row id, so the
publication records look the same as with Telegram.
"""

from __future__ import annotations

import html as html_lib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cars_bot.db.models import OutboxMessage, PublicationStatus, utcnow
from cars_bot.errors import NotConfigured
from cars_bot.private_files import open_private, private_dir
from cars_bot.publishing.delivery import MediaRef, NotSent, Publisher

logger = logging.getLogger("cars_bot.publishing.outbox")

OUTBOX_TARGET = "outbox"
LOG_NAME = "outbox.log"


class OutboxPublisher:
    """Same interface as :class:`~cars_bot.publishing.telegram.TelegramPublisher`, backed by the
    `outbox` table and files under `directory`."""

    kind = "outbox"
    channel = OUTBOX_TARGET
    publication_status = PublicationStatus.OUTBOX

    def __init__(self, session_factory: Callable[[], Session], directory: Path | str, *,
                 bot_username: str | None = None) -> None:
        self.session_factory = session_factory
        self.directory = Path(directory)
        self.bot_username = bot_username

    def send_post(self, channel: str, html: str, media_refs: list[MediaRef], *,
                  post_id: int | None = None) -> list[int]:
        """Store the rendered post (row + `<post_id>.html` + a log entry); return ``[row id]``."""
        return [self._store("post", channel or OUTBOX_TARGET, html, list(media_refs), post_id)]

    def send_message(self, recipient: str | int, html: str) -> int:
        """Store a private message (a seller contact) and log it; return the row id."""
        return self._store("contact", str(recipient), html, [], None)

    def find_published(self, channel: str, post_id: int, *, after_id: int | None = None,
                       since: datetime | None = None) -> list[int]:
        """The outbox row ids of post `post_id` ([] when it was never stored: always certain)."""
        with self.session_factory() as session:
            rows = session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.post_id == post_id, OutboxMessage.kind == "post")
                .order_by(OutboxMessage.id)
            ).all()
        return [int(r) for r in rows]

    def _store(self, kind: str, recipient: str, html: str, media: list[MediaRef], post_id: int | None) -> int:
        now = utcnow()
        try:
            with self.session_factory() as session, session.begin():
                row = OutboxMessage(post_id=post_id, kind=kind, recipient=recipient, text=html, media=media,
                                    created_at=now)
                session.add(row)
                session.flush()
                row_id = int(row.id)
                # Files are written inside the transaction: if writing fails the row is rolled back,
                # so a row always has its file (a file without a row is overwritten by the retry).
                self._write_files(kind, row_id, recipient, html, media, post_id, now)
        except OSError as exc:  # the row was rolled back: nothing was "sent"
            raise NotSent(f"cannot write the outbox under {self.directory}: {exc}") from exc
        logger.info("outbox #%s: %s for %s", row_id, kind, f"post {post_id}" if post_id else recipient)
        return row_id

    def _write_files(self, kind: str, row_id: int, recipient: str, html: str, media: list[MediaRef],
                     post_id: int | None, now: datetime) -> None:
        private_dir(self.directory, tighten_existing=False)  # post texts and recipients: owner only
        stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
        subject = f"post {post_id}" if post_id is not None else f"to {recipient}"
        header = f"=== outbox #{row_id} | {stamp} | {kind} | {subject} | media: {len(media)} ==="
        if kind == "post":
            name = f"{post_id}.html" if post_id is not None else f"message-{row_id}.html"
            with open_private(self.directory / name, "w", encoding="utf-8") as page:
                page.write(_html_page(row_id, post_id, stamp, html, media))
        # One write per entry: appends from several worker processes do not interleave.
        with open_private(self.directory / LOG_NAME, "a", encoding="utf-8") as log:
            log.write(f"{header}\n{html}\n\n")


def _html_page(row_id: int, post_id: int | None, stamp: str, html: str, media: list[MediaRef]) -> str:
    media_items = "".join(
        f"<li>{html_lib.escape(str(ref['channel']))} #{html_lib.escape(str(ref['message_id']))}</li>" for ref in media
    )
    media_block = f"<p>Media re-sent from:</p><ul>{media_items}</ul>" if media else ""
    # The post is Telegram HTML (b, a, escaped text): it renders as is inside <pre>, newlines kept.
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>Post {post_id if post_id is not None else ''} (outbox #{row_id})</title></head>\n<body>\n"
        f"<p><small>outbox #{row_id}, {stamp}</small></p>\n"
        "<pre style=\"white-space: pre-wrap; font-family: sans-serif; max-width: 40em\">"
        f"{html}</pre>\n{media_block}\n</body></html>\n"
    )


def publisher_for(settings: Any, session_factory: Callable[[], Session]) -> Publisher:
    """The publisher for `settings`: Telegram when a channel and credentials are set, else the outbox.

    Telegram needs TELEGRAM_CHANNEL and a bot token or a session string; telethon (MTProto) also needs
    TELEGRAM_API_ID/TELEGRAM_API_HASH, even for a bot. A channel with credentials but without them
    raises :class:`NotConfigured` rather than silently publishing to the outbox.
    """
    channel = getattr(settings, "telegram_channel", None)
    credentials = getattr(settings, "telegram_bot_token", None) or getattr(settings, "telegram_session_string", None)
    if channel and credentials:
        if not (getattr(settings, "telegram_api_id", None) and getattr(settings, "telegram_api_hash", None)):
            raise NotConfigured(
                "TELEGRAM_CHANNEL and a bot token/session are set, but telethon also needs TELEGRAM_API_ID "
                "and TELEGRAM_API_HASH (my.telegram.org)"
            )
        from cars_bot.publishing.delivery import stored_peers
        from cars_bot.publishing.telegram import TelegramPublisher

        return TelegramPublisher(settings, peers=stored_peers(session_factory))
    home = getattr(settings, "home", None) or getattr(settings, "carsctl_home", None) or Path(".carsctl")
    return OutboxPublisher(session_factory, Path(home) / "outbox",
                           bot_username=getattr(settings, "telegram_bot_username", None))
