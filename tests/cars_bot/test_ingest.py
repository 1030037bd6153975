"""cars_bot.ingest: one way in for a post; stored once, process_post_task sent exactly once (counted on
the broker), the dispatch recorded on the post."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cars_bot.ingest import ingest_post

AD = "Продам Lada Vesta 2020, 1.6 МКПП, пробег 45 тыс. км. Цена 1.05 млн руб."


def _queued(app: Any) -> int:
    from cars_bot.broker import queue_depths

    return queue_depths(app, ["ai_processing"])["ai_processing"].ready


def _post(db: Any, post_id: int) -> Any:
    from cars_bot.db.models import Post

    with db() as session:
        return session.get(Post, post_id)


def test_a_post_ingested_twice_is_stored_and_enqueued_once(db: Any, celery_app_real: Any) -> None:
    first = ingest_post(channel="@cars_spb", text=AD, message_id=7, dispatch=True)
    again = ingest_post(channel="https://t.me/cars_spb", text=AD, message_id=7, dispatch=True)
    assert first.created and first.task_id and not again.created and again.task_id is None
    assert again.post_id == first.post_id
    assert _queued(celery_app_real) == 1
    post = _post(db, first.post_id)
    assert post.dispatch_task_id == first.task_id and post.dispatched_at is not None


def test_concurrent_ingests_of_one_post_enqueue_it_once(db: Any, celery_app_real: Any) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def ingest() -> None:
        barrier.wait()
        results.append(ingest_post(channel="@cars_spb", text=AD, message_id=8, dispatch=True))

    threads = [threading.Thread(target=ingest) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len({r.post_id for r in results}) == 1
    assert sum(1 for r in results if r.task_id) == 1
    assert _queued(celery_app_real) == 1


def test_a_failed_send_releases_the_claim_for_the_next_delivery(db: Any, celery_app_real: Any) -> None:
    def refuse(task_id: str, post_id: int) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        ingest_post(channel="@cars_spb", text=AD, message_id=9, dispatch=True, send=refuse)
    stored = ingest_post(channel="@cars_spb", text=AD, message_id=9, dispatch=True)
    assert not stored.created and stored.task_id is not None
    assert _queued(celery_app_real) == 1


def test_a_post_stored_without_dispatch_is_dispatched_by_a_later_ingest(db: Any, celery_app_real: Any) -> None:
    kept = ingest_post(channel="@cars_spb", text=AD, message_id=10, dispatch=False)
    assert kept.created and kept.task_id is None and _queued(celery_app_real) == 0
    assert _post(db, kept.post_id).dispatch_task_id is None
    later = ingest_post(channel="@cars_spb", text=AD, message_id=10, dispatch=True)
    assert later.task_id is not None and _queued(celery_app_real) == 1


def test_the_channels_seller_contact_is_stored_with_the_post(db: Any) -> None:
    from cars_bot.db.models import Channel, Post

    with db.begin() as session:
        row = Channel(username="https://t.me/+PrivateHash", seller_phone="+79001234567", seller_username="ivan")
        session.add(row)
        session.flush()
        channel_id = row.id
    stored = ingest_post(channel=channel_id, text=AD, message_id=3, link="https://t.me/c/1/3", dispatch=False)
    with db() as session:
        post = session.get(Post, stored.post_id)
        assert post.channel_id == channel_id and post.link == "https://t.me/c/1/3"
        assert (post.contact.phone, post.contact.telegram_username) == ("+79001234567", "ivan")
