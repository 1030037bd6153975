"""Posts from the operator's side: store, enqueue processing, wait for the outcome, describe."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from carsctl.errors import OperationFailed, UsageError

FINAL = {"published", "rejected", "failed"}
PROCESS_TASK = "cars_bot.tasks.ai_tasks.process_post_task"


def store_and_enqueue(cli: Any, records: Iterable[dict[str, Any]], process: bool) -> list[dict[str, Any]]:
    """Store records (de-duplicated) and, with `process`, enqueue processing of the new ones."""
    from cars_bot.db.session import session_scope
    from cars_bot.posts import import_records
    from carsctl.health.connectivity import check_broker

    if process:
        check_broker(cli.settings)
    try:
        with session_scope() as session:
            stored = import_records(session, records)
    except ValueError as error:
        raise UsageError(str(error)) from None
    rows = []
    for post_id, created in stored:
        task_id = None
        if process and created:
            task_id = cli.celery_app.send_task(PROCESS_TASK, args=[post_id]).id
        rows.append({"post_id": post_id, "created": created, "task_id": task_id})
    return rows


def wait_for_posts(post_ids: list[int], timeout: float,
                   progress: Callable[[dict[int, str]], None] | None = None) -> dict[int, str]:
    """Poll the database until every post reached a final status or `timeout` passed."""
    from sqlalchemy import select

    from cars_bot.db.models import Post
    from cars_bot.db.session import session_scope

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            states = {pid: status.value for pid, status in
                      session.execute(select(Post.id, Post.status).where(Post.id.in_(post_ids)))}
        if progress:
            progress(states)
        if all(states.get(pid) in FINAL for pid in post_ids) or time.monotonic() >= deadline:
            return states
        time.sleep(0.1)


def describe_post(post_id: int) -> dict[str, Any]:
    """Everything known about one post: status, classification, car data, publication."""
    from cars_bot.db.models import Post
    from cars_bot.db.session import session_scope

    with session_scope() as session:
        post = session.get(Post, post_id)
        if post is None:
            raise OperationFailed(f"no post with id {post_id}")
        car = post.car
        publication = post.publication
        return {
            "id": post.id, "channel": post.channel.username, "message_id": post.message_id, "link": post.link,
            "status": post.status.value, "reason": post.status_reason, "is_sale": post.is_sale,
            "confidence": post.confidence, "backend": post.ai_backend, "summary": post.summary,
            "found_at": post.found_at, "processed_at": post.processed_at, "published_at": post.published_at,
            "text": post.text,
            "car": None if car is None else {
                name: getattr(car, name).value if hasattr(getattr(car, name), "value") else getattr(car, name)
                for name in ("brand", "model", "year", "price", "mileage", "engine_volume", "transmission",
                             "fuel", "owners", "city", "autoteka_status", "market_price", "equipment")},
            "publication": None if publication is None else {
                "status": publication.status.value, "target": publication.target,
                "message_ids": publication.message_ids, "sent_at": publication.sent_at,
                "text": publication.text},
        }


def list_posts(status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest posts, optionally of one status."""
    from sqlalchemy import select

    from cars_bot.db.models import CarData, Channel, Post, PostStatus
    from cars_bot.db.session import session_scope

    query = (select(Post.id, Channel.username, Post.status, Post.status_reason, CarData.brand, CarData.model,
                    CarData.year, CarData.price)
             .join(Channel, Post.channel_id == Channel.id).outerjoin(CarData, CarData.post_id == Post.id)
             .order_by(Post.id.desc()).limit(limit))
    if status:
        try:
            query = query.where(Post.status == PostStatus(status))
        except ValueError:
            raise UsageError(f"unknown status {status!r}: use one of {', '.join(s.value for s in PostStatus)}") \
                from None
    with session_scope() as session:
        return [{"id": r[0], "channel": r[1], "status": r[2].value, "reason": r[3], "brand": r[4], "model": r[5],
                 "year": r[6], "price": r[7]} for r in session.execute(query)]
