"""Sending tasks by hand: one, or many at once.

Bulk dispatch builds each message as `apply_async` would (routing, priority, task-sent event) and
hands them to kombu's batch producer, which on Redis writes them with pipelined round trips instead
of one per message. It does not subscribe to each task's result as `apply_async` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cars_bot.broker import task_route
from carsctl.errors import CarsctlError, OperationFailed

if TYPE_CHECKING:
    from celery import Celery

    from carsctl.dispatch.arguments import SendOptions

BULK_BATCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class SentTask:
    """One task sent: its id, its arguments, and the queue and priority it was sent with."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    eta: datetime | None
    countdown: float | None


@dataclass(frozen=True, slots=True)
class BulkSent:
    """Many tasks sent in one pipeline: how many, where, how fast, and their ids in order."""

    task: str
    sent: int
    queue: str | None
    priority: int | None
    seconds: float
    rate_per_s: int | None
    ids: list[str]


def send(app: Celery, task: Any, args: list[Any], kwargs: dict[str, Any], options: SendOptions) -> SentTask:
    """Send one task; return its id and where it went."""
    from carsctl.cluster.remote_control import broker_error, connected

    publish = options.apply_async_options()
    route = task_route(app, task, publish, args, kwargs)
    with connected(app, write=True):
        pass  # a broker that is down: one clear line now, not after the publish and result-store retries
    require_subject(task, args, kwargs)
    try:
        result = task.apply_async(args=args, kwargs=kwargs, **publish)
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        raise broker_error(app, error) from None
    queue = route.get("queue")
    return SentTask(id=result.id, task=task.name, args=args, kwargs=kwargs, queue=getattr(queue, "name", queue),
                    priority=route.get("priority"), eta=options.eta, countdown=options.countdown)


def require_subject(task: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse (OperationFailed, exit 1) a task about a post that does not exist: `process-post 42` for no
    post 42 would run, find nothing and "succeed". Tasks without a `post_id` parameter pass unchecked.
    """
    from cars_bot.task_names import task_alias
    from carsctl.dispatch.arguments import task_signature

    try:
        post_id = task_signature(task).bind(*args, **kwargs).arguments.get("post_id")
    except TypeError:
        return
    if post_id is None:
        return
    from cars_bot.db.models import Post
    from cars_bot.db.session import session_factory

    with session_factory()() as session:
        exists = session.get(Post, post_id) is not None
    if not exists:
        raise OperationFailed(f"no post {post_id}: {task_alias(task.name)} not sent",
                              hint="carsctl post list shows the stored posts")


def send_bulk(app: Celery, task: Any, arg_lists: list[list[Any]], options: SendOptions,
              batch_size: int = BULK_BATCH_SIZE) -> BulkSent:
    """Send one task per argument list through kombu's batch producer; return ids, count, rate.

    The retry policy is not used: a pipeline is not replayed, a failed batch is reported instead.
    """
    from kombu import Producer
    from kombu.utils.uuid import uuid

    from carsctl.cluster.remote_control import broker_error, connected

    countdown, eta = options.countdown, options.eta
    amqp = app.amqp
    route = task_route(app, task, options.routing())
    limits = {"time_limit": route.pop("time_limit", None), "soft_time_limit": route.pop("soft_time_limit", None)}
    sent_event = app.conf.task_send_sent_event
    ids: list[str] = []
    began = time.perf_counter()
    try:
        with connected(app, write=True) as conn:
            producer = Producer(conn.default_channel)
            with producer.batch(max_size=batch_size):
                for args in arg_lists:
                    task_id = uuid()
                    message = amqp.create_task_message(
                        task_id, task.name, args, {}, countdown=countdown, eta=eta,
                        reply_to=app.thread_oid, create_sent_event=sent_event, **limits)
                    amqp.send_task_message(producer, task.name, message, **route)
                    ids.append(task_id)
    except CarsctlError:
        raise
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        if ids and type(error).__name__ == "BatchPublishError":
            raise OperationFailed(f"bulk dispatch failed after {len(ids)} messages were prepared; delivery "
                                  "of the last batch is uncertain", hint=str(error.__cause__ or error)) from None
        raise broker_error(app, error) from None
    seconds = time.perf_counter() - began
    queue = route.get("queue")
    return BulkSent(task=task.name, sent=len(ids), queue=getattr(queue, "name", queue), priority=route.get("priority"),
                    seconds=round(seconds, 3), rate_per_s=round(len(ids) / seconds) if seconds else None, ids=ids)
