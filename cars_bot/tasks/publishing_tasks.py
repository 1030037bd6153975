"""Publishing tasks (queue `publishing`): thin wrappers around :mod:`cars_bot.publishing.publication`
and :mod:`cars_bot.publishing.contacts`.

Retries, time limits, logging and the failed-task registry come from :class:`CarsTask`: the domain
functions raise TransientError (with Telegram's FloodWait or the rate limiter's delay as `retry_after`)
when the task should run again, and return a typed result for every final outcome, stored as a dict.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from cars_bot.celery_app import app
from cars_bot.tasks.base import CarsTask, task_result

if TYPE_CHECKING:
    from cars_bot.publishing.delivery import Publisher, SessionFactory


def _publisher(settings: Any) -> tuple[SessionFactory, Publisher]:
    from cars_bot.db.session import session_factory
    from cars_bot.publishing.outbox import publisher_for

    factory = session_factory()
    return factory, publisher_for(settings, factory)


def _limiter(settings: Any, publisher: Publisher) -> Callable[[], float] | None:
    """The cluster-wide limiter for Telegram; the outbox is not rate limited."""
    if publisher.kind != "telegram":
        return None
    from cars_bot.broker import is_redis_url
    from cars_bot.publishing.ratelimit import publish_key, redis_client, reserve_slot

    candidates = (settings.redis_url, settings.broker_url, settings.result_backend_url)
    url = next((u for u in candidates if u and is_redis_url(u)), None)
    if url is None:
        from cars_bot.errors import NotConfigured

        raise NotConfigured("the publishing rate limit needs Redis: set REDIS_URL")
    return partial(reserve_slot, redis_client(url), publish_key(publisher.channel),
                   settings.publish_rate_per_minute)


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.publishing_tasks.publish_post_task",
          soft_time_limit=60, time_limit=90)
def publish_post_task(self: CarsTask, post_id: int) -> dict[str, Any]:
    """Publish a ready post to the channel (or the outbox) exactly once."""
    from cars_bot.config import get_settings
    from cars_bot.publishing.delivery import RateLimited
    from cars_bot.publishing.publication import publish_post

    settings = get_settings()
    factory, publisher = _publisher(settings)
    try:
        return task_result(publish_post(int(post_id), session_factory=factory, publisher=publisher,
                                        limiter=_limiter(settings, publisher), task_id=self.request.id))
    except RateLimited as exc:
        if self.request.called_directly:
            raise
        # Waiting for the cluster's rate is not a failure: it must not use up max_retries, or a burst
        # of posts would leave some unpublished. Jitter spreads the waiting tasks over the next slots.
        wait = float(exc.retry_after or 1.0)
        # (celery reads max_retries=None as "the default", so allow exactly one more than used so far)
        raise self.retry(exc=exc, countdown=wait + random.uniform(0, min(wait, 30.0)),
                         max_retries=self.request.retries + 1) from exc


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.publishing_tasks.send_contact_info_task",
          soft_time_limit=30, time_limit=60)
def send_contact_info_task(self: CarsTask, user_id: int, post_id: int) -> dict[str, Any]:
    """Send a post's seller contact to subscriber `user_id` (a Telegram user id), once per (user, post)."""
    from cars_bot.config import get_settings
    from cars_bot.publishing.contacts import send_contact_info

    factory, publisher = _publisher(get_settings())
    return task_result(send_contact_info(int(user_id), int(post_id), session_factory=factory, publisher=publisher))
