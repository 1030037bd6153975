"""Posts from the operator's side: store, enqueue processing, wait for the outcome, describe.

The queries belong to `cars_bot.posts`; this module opens the session, sends the processing tasks
through Celery, waits, and turns "no such post" or a bad status into the CLI's errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carsctl.errors import DependencyUnavailable, OperationFailed, UsageError

if TYPE_CHECKING:
    from cars_bot.posts import PostDescription, PostRow, PostStatus
    from carsctl.context import CliContext


@dataclass(frozen=True, slots=True)
class EnqueuedPost:
    """A stored post: new or a duplicate, the processing task sent for it, and its status if waited for.

    A duplicate gets a task too when it was stored earlier but never finished and no message for it is
    left in the broker (an import interrupted by a broker outage, re-run).
    """

    post_id: int
    created: bool
    task_id: str | None
    status: PostStatus | None = None


#: Tasks are sent, and their dispatch recorded on the posts, in batches of this many.
DISPATCH_BATCH = 200


def store_and_enqueue(cli: CliContext, records: Iterable[dict[str, Any]], process: bool) -> list[EnqueuedPost]:
    """Store records (de-duplicated) and, with `process`, enqueue processing of every stored post that
    is still `new` with no message for it in the broker: the new ones, and those an interrupted run
    stored but did not dispatch (so re-running an import finishes it, and dispatches each post once).

    Without `process` the new posts are marked held: recovery leaves them alone. A broker lost while
    sending raises DependencyUnavailable (exit 69) saying how many were sent; what was sent is recorded.
    """
    from cars_bot.db.session import session_scope
    from cars_bot.posts import awaiting_dispatch, import_records
    from carsctl.health.connectivity import check_broker

    if process:
        check_broker(cli.settings)
    try:
        with session_scope() as session:
            stored = import_records(session, records, processing_held=not process)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not process:
        return [EnqueuedPost(post_id, created, None) for post_id, created in stored]
    in_flight = _queued_post_ids(cli) if not all(created for _, created in stored) else set()
    with session_scope() as session:
        to_send = awaiting_dispatch(session, [post_id for post_id, _ in stored], in_flight)
    sent = _dispatch(cli, to_send)
    return [EnqueuedPost(post_id, created, sent.get(post_id)) for post_id, created in stored]


def _queued_post_ids(cli: CliContext) -> set[int]:
    """Posts with a processing message in the broker (ready or held by a worker)."""
    from cars_bot.broker import broker_messages
    from cars_bot.task_names import PROCESS_POST

    try:
        messages = broker_messages(cli.celery_app)
    except _broker_errors() as error:
        raise _broker_lost(cli, error, sent=0, total=None) from None
    return {m.first_arg for m in messages if m.task == PROCESS_POST}


def _dispatch(cli: CliContext, post_ids: list[int]) -> dict[int, str]:
    """Send process_post_task for each post, recording each dispatch on its post; returns post -> task id."""
    from cars_bot.broker import without_result_subscription
    from cars_bot.db.session import session_scope
    from cars_bot.posts import record_dispatches
    from cars_bot.task_names import PROCESS_POST

    sent: dict[int, str] = {}
    for start in range(0, len(post_ids), DISPATCH_BATCH):
        batch: list[tuple[int, str]] = []
        try:
            with without_result_subscription():
                for post_id in post_ids[start:start + DISPATCH_BATCH]:
                    batch.append((post_id, cli.celery_app.send_task(PROCESS_POST, args=[post_id]).id))
        except _broker_errors() as error:
            failure: BaseException | None = error
        else:
            failure = None
        with session_scope() as session:
            record_dispatches(session, batch)
        sent.update(batch)
        if failure is not None:
            raise _broker_lost(cli, failure, sent=len(sent), total=len(post_ids)) from None
    return sent


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What a send or a read raises when the broker goes away (kombu wraps most in OperationalError)."""
    import kombu.exceptions
    import redis.exceptions

    return (kombu.exceptions.OperationalError, redis.exceptions.RedisError, ConnectionError, TimeoutError, OSError)


def _broker_lost(cli: CliContext, error: BaseException, *, sent: int, total: int | None) -> DependencyUnavailable:
    from cars_bot.secret_masking import mask_url

    reason = " ".join(str(error).split())[:200] or type(error).__name__
    done = f"; {sent} of {total} posts dispatched, all stored" if total is not None else ""
    return DependencyUnavailable(f"broker lost at {mask_url(cli.settings.broker_url)}: {reason}{done}",
                                 hint="run the same command again once the broker is back: it dispatches "
                                      "the posts not dispatched yet")


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
