"""Suite 4: the database unavailable for a while. Tasks retry with backoff and complete once it is
back; nothing is marked published that was not (every published post has its one outbox row).

SQLite: another connection holds an exclusive transaction on the file. PostgreSQL (TEST_DATABASE_URL):
the worker connects through a TCP proxy this test controls, which refuses connections and cuts the
open ones for a while (the machine's server is never stopped).
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from sqlalchemy import func, select

from cars_bot.db.models import FailedTask, OutboxMessage, Post, PostStatus, Publication
from tests.reliability.conftest import REJECT_EVERY, Stack, post_records, wait_for, write_jsonl
from tests.workers import celery_worker

pytestmark = [pytest.mark.slow]

POSTS = 12
FAST_LOCK_MODULE = "reliability_fast_lock"
#: Loaded by the worker (-I): SQLite gives up on a lock after 0.3 s instead of 30 s, so the outage
#: shows as "database is locked" errors (as a refused PostgreSQL connection does) within the test.
FAST_LOCK_SOURCE = '''
from cars_bot.db import session

_pragmas = session._sqlite_pragmas


def pragmas(connection, record):
    _pragmas(connection, record)
    connection.execute("PRAGMA busy_timeout=300")


session._sqlite_pragmas = pragmas
'''


def _retries_logged(log_path, at_least: int) -> bool:
    return log_path.exists() and log_path.read_text(errors="replace").count(" retry ") >= at_least


def _check_outcome(stack: Stack) -> None:
    counts = stack.statuses()
    assert counts == {"published": POSTS - POSTS // REJECT_EVERY, "rejected": POSTS // REJECT_EVERY}, counts
    with stack.sessions() as session:
        published = set(session.scalars(select(Post.id).where(Post.status == PostStatus.PUBLISHED)))
        outbox = session.execute(select(OutboxMessage.post_id, func.count()).where(OutboxMessage.kind == "post")
                                 .group_by(OutboxMessage.post_id)).all()
        publications = set(session.scalars(select(Publication.post_id)))
        failures = session.scalar(select(func.count()).select_from(FailedTask))
    assert {post_id for post_id, _ in outbox} == published == publications
    assert all(n == 1 for _, n in outbox)
    assert failures == 0


def _run_through_outage(stack: Stack, tmp_path, outage, extra: tuple[str, ...] = (),
                        env: dict[str, str] | None = None) -> None:
    from cars_bot.task_names import PROCESS_POST

    ads = write_jsonl(tmp_path / "ads.jsonl", post_records(POSTS))
    assert stack.carsctl("post", "import", str(ads), "--no-process").returncode == 0
    with stack.sessions() as session:
        ids = list(session.scalars(select(Post.id)))
    log = tmp_path / "worker.log"
    with celery_worker(stack.app, pool="prefork", concurrency=2, log=log, extra=extra, env=env,
                       queues="ai_processing,publishing"):
        with outage():
            for post_id in ids:
                stack.app.send_task(PROCESS_POST, args=[post_id])
            wait_for(lambda: _retries_logged(log, 2 * 2), 60, "tasks to retry while the database is away")
        wait_for(lambda: stack.finished(POSTS), 120, "every post to finish after the database is back")
    _check_outcome(stack)


def test_sqlite_locked_for_a_while(stack: Stack, tmp_path, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite variant (TEST_DATABASE_URL points at another database)")
    (stack.run.tmp / f"{FAST_LOCK_MODULE}.py").write_text(FAST_LOCK_SOURCE)

    @contextmanager
    def locked() -> Iterator[None]:
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    _run_through_outage(stack, tmp_path, locked, extra=("-I", FAST_LOCK_MODULE))


class Proxy:
    """A TCP proxy to the database that can refuse connections and cut the open ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # refused: the server is "down"
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    @contextmanager
    def down(self) -> Iterator[None]:
        self.up = False
        with self.lock:
            cut, self.open = self.open, []
        for end in cut:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        try:
            yield
        finally:
            self.up = True

    def close(self) -> None:
        self.listener.close()


def test_postgresql_refusing_connections_for_a_while(stack: Stack, tmp_path, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL variant runs when TEST_DATABASE_URL points at PostgreSQL")
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        _run_through_outage(stack, tmp_path, proxy.down, env={"DATABASE_URL": proxied})
    finally:
        proxy.close()
