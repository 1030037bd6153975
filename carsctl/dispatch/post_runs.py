"""Posts from the operator's side: store, enqueue processing, wait for the outcome, describe.

The queries belong to `cars_bot.posts`; this module opens the session, sends the processing tasks
through Celery, waits, and turns "no such post" or a bad status into the CLI's errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carsctl.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from cars_bot.posts import PostDescription, PostRow, PostStatus
    from carsctl.context import CliContext


@dataclass(frozen=True, slots=True)
class EnqueuedPost:
    """A stored post: new or a duplicate, the processing task sent for it, and its status if waited for."""

    post_id: int
    created: bool
    task_id: str | None
    status: PostStatus | None = None


def store_and_enqueue(cli: CliContext, records: Iterable[dict[str, Any]], process: bool) -> list[EnqueuedPost]:
    """Store records (de-duplicated) and, with `process`, enqueue processing of the new ones."""
    from cars_bot.db.session import session_scope
    from cars_bot.posts import import_records
    from cars_bot.task_names import PROCESS_POST
    from carsctl.health.connectivity import check_broker

    if process:
        check_broker(cli.settings)
    try:
        with session_scope() as session:
            stored = import_records(session, records)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return [EnqueuedPost(post_id, created,
                         cli.celery_app.send_task(PROCESS_POST, args=[post_id]).id if process and created else None)
            for post_id, created in stored]


def wait_for_posts(post_ids: list[int], timeout: float,
                   progress: Callable[[dict[int, PostStatus]], None] | None = None) -> dict[int, PostStatus]:
    """Poll the database until every post reached a final status or `timeout` passed."""
    from cars_bot.db.session import session_scope
    from cars_bot.posts import FINAL_STATUSES, post_statuses

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            states = post_statuses(session, post_ids)
        if progress:
            progress(states)
        if all(states.get(pid) in FINAL_STATUSES for pid in post_ids) or time.monotonic() >= deadline:
            return states
        time.sleep(0.1)


def describe_post(post_id: int) -> PostDescription:
    """Everything known about one post; OperationFailed (exit 1) if there is none."""
    from cars_bot.db.session import session_scope
    from cars_bot.posts import describe_post as describe

    with session_scope() as session:
        post = describe(session, post_id)
    if post is None:
        raise OperationFailed(f"no post with id {post_id}")
    return post


def list_posts(status: str | None, limit: int) -> list[PostRow]:
    """The newest posts, optionally of one status; UsageError (exit 2) for an unknown status."""
    from cars_bot.db.session import session_scope
    from cars_bot.posts import list_posts as newest
    from cars_bot.posts import parse_status

    try:
        wanted = parse_status(status) if status else None
    except ValueError as error:
        raise UsageError(str(error)) from None
    with session_scope() as session:
        return newest(session, wanted, limit)
