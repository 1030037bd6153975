"""Publishing tasks (queue `publishing`): thin wrappers around :mod:`cars_bot.publishing.publication`
and :mod:`cars_bot.publishing.contacts`.

Retries, time limits, logging and the failed-task registry come from :class:`CarsTask`: the domain
functions raise TransientError (with Telegram's FloodWait or the rate limiter's delay as `retry_after`)
when the task should run again, and return a typed result for every final outcome, stored as a dict.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from celery.signals import worker_init, worker_process_shutdown

from cars_bot.celery_app import app
from cars_bot.tasks.base import CarsTask, retry_delay, task_result

if TYPE_CHECKING:
    from cars_bot.publishing.delivery import Publisher, SessionFactory

logger = logging.getLogger("cars_bot.tasks.publishing")


@worker_init.connect
def _check_telegram_session(**_: Any) -> None:
    """At worker start: say at once when TELEGRAM_SESSION_STRING cannot work (instead of at each post)."""
    from cars_bot.config import get_settings
    from cars_bot.publishing.telegram_client import validate_session_string

    problem = validate_session_string(get_settings().telegram_session_string)
    if problem:
        logger.error("TELEGRAM_SESSION_STRING: invalid (%s); posts to Telegram fail until it is replaced", problem)


@worker_process_shutdown.connect
def _close_telegram_client(**_: Any) -> None:
    """A pool process ends (recycled, or the worker stops): close its Telegram connection (no logout)."""
    from cars_bot.publishing.telegram_client import close_process_client

    close_process_client()


def _publisher(settings: Any) -> tuple[SessionFactory, Publisher]:
    from cars_bot.db.session import session_factory
    from cars_bot.publishing.outbox import publisher_for

    factory = session_factory()
    return factory, publisher_for(settings, factory)


def _limiter(settings: Any, publisher: Publisher) -> Callable[[], float] | None:
    """The cluster-wide limiter for Telegram; the outbox is not rate limited."""
    if publisher.kind != "telegram":
        return None
    from cars_bot.broker_urls import is_redis_url
    from cars_bot.publishing.ratelimit import publish_key, redis_client, reserve_slot

    candidates = (settings.redis_url, settings.broker_url, settings.result_backend_url)
    url = next((u for u in candidates if u and is_redis_url(u)), None)
    if url is None:
        from cars_bot.errors import NotConfigured

        raise NotConfigured("the publishing rate limit needs Redis: set REDIS_URL")
    return partial(reserve_slot, redis_client(url), publish_key(publisher.channel),
                   settings.publish_rate_per_minute)


#: The message header counting a publish task's waits (rate limit, another delivery's lease): celery's
#: `retries` counts them too, so the failures a task may still retry are `retries - waits`.
WAITS_HEADER = "cars_bot_waits"


def _waits(request: Any) -> int:
    """How many of this task's earlier runs were waits (the header, on a worker or eagerly)."""
    value = getattr(request, WAITS_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(WAITS_HEADER)
    return int(value or 0)


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.publishing_tasks.publish_post_task",
          soft_time_limit=60, time_limit=90)
def publish_post_task(self: CarsTask, post_id: int) -> dict[str, Any]:
    """Publish a ready post to the channel (or the outbox) exactly once.

    Waiting (the cluster's rate limit, another delivery's lease) is not a failure: it uses up none of
    the task's retries, before or after a real failure, or a busy channel alone could fail a post."""
    from cars_bot.config import get_settings
    from cars_bot.publishing.delivery import Waiting
    from cars_bot.publishing.publication import publish_post

    settings = get_settings()
    factory, publisher = _publisher(settings)
    waits = _waits(self.request)
    try:
        return task_result(publish_post(int(post_id), session_factory=factory, publisher=publisher,
                                        limiter=_limiter(settings, publisher), task_id=self.request.id))
    except Waiting as exc:
        if self.request.called_directly:
            raise
        # Jitter spreads the waiting tasks over the next slots.
        wait = float(exc.retry_after or 1.0)
        # (celery reads max_retries=None as "the default", so allow exactly one more than used so far)
        raise self.retry(exc=exc, countdown=wait + random.uniform(0, min(wait, 30.0)),
                         max_retries=self.request.retries + 1, headers={WAITS_HEADER: waits + 1}) from exc
    except self.transient_errors as exc:
        if self.request.called_directly:
            raise
        failures = self.request.retries - waits  # the retries real failures used
        raise self.retry(exc=exc, countdown=retry_delay(failures, exc), max_retries=waits + self.max_retries,
                         headers={WAITS_HEADER: waits}) from exc


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.publishing_tasks.send_contact_info_task",
          soft_time_limit=30, time_limit=60)
def send_contact_info_task(self: CarsTask, user_id: int, post_id: int) -> dict[str, Any]:
    """Send a post's seller contact to subscriber `user_id` (a Telegram user id), once per (user, post)."""
    from cars_bot.config import get_settings
    from cars_bot.publishing.contacts import send_contact_info

    factory, publisher = _publisher(get_settings())
    return task_result(send_contact_info(int(user_id), int(post_id), session_factory=factory, publisher=publisher))
