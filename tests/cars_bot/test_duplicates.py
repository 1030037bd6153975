"""One ad, one publication: a repost of an ad already published is stored as `duplicate`, linked to
the first post, counted in the stats and shown by `describe_post`; reworded reposts count, a price
change does not."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cars_bot.ai.pipeline import Filters, RulesBackend, process_post
from cars_bot.db.models import Post, PostStatus, SellerContact, utcnow
from cars_bot.duplicates import AdIdentity, identity, normalize_phone
from cars_bot.maintenance import database_stats
from cars_bot.posts import describe_post, store_post

pytestmark = pytest.mark.db

ORIGINAL = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Кожаный салон, "
            "подогрев сидений, камера. Москва. Цена 2 150 000 ₽")
#: The same ad rewritten by another channel's admin: other words, order, units and price notation.
REWORDED = ("🚗 В продаже Тойота Камри, 2018 год выпуска. Пробег 87000 км. Двигатель 2.5, автомат. "
            "Один хозяин, салон кожа. Стоимость 2.15 млн руб. Звоните!")
#: Reworded and without the mileage: the same ad only when the seller contact is the same.
NO_MILEAGE = "Продаётся Toyota Camry 2018 г., АКПП, в отличном состоянии, цена 2 150 000 ₽, пишите в ЛС"
CHEAPER = ORIGINAL.replace("2 150 000", "1 990 000")
ON = Filters(duplicate_window_days=14)


def _post(db, text: str, channel: str, phone: str | None = None, seller: str | None = None) -> int:
    with db.begin() as session:
        post, _ = store_post(session, channel=channel, text=text)
        if phone or seller:
            session.add(SellerContact(post=post, phone=phone, telegram_username=seller))
        session.flush()
        return post.id


def _run(db, post_id: int, filters: Filters = ON, task_id: str | None = None):
    enqueued: list[int] = []
    result = process_post(post_id, task_id=task_id or f"task-{post_id}", sessions=db, backend=RulesBackend(),
                          filters=filters, enqueue_publish=enqueued.append)
    return result, enqueued


def _status(db, post_id: int) -> tuple[PostStatus, int | None]:
    with db() as session:
        post = session.get(Post, post_id)
        return post.status, post.duplicate_of


def test_an_exact_repost_in_another_channel_is_a_duplicate_of_the_first(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a")
    copy = _post(db, "🔥🔥 " + ORIGINAL.upper() + " !!!", "@cars_b")
    assert _run(db, first)[0].status is PostStatus.READY
    result, enqueued = _run(db, copy)
    assert result.status is PostStatus.DUPLICATE and not result.publish_enqueued and enqueued == []
    assert result.reason == f"repost of post #{first}"
    assert _status(db, copy) == (PostStatus.DUPLICATE, first)


def test_a_reworded_repost_with_the_same_car_mileage_and_price_is_a_duplicate(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a", phone="+7 999 111-22-33")
    reworded = _post(db, REWORDED, "@cars_b", phone="+7 900 000-00-00")  # another channel, another contact
    _run(db, first)
    assert _run(db, reworded)[0].status is PostStatus.DUPLICATE
    assert _status(db, reworded) == (PostStatus.DUPLICATE, first)


def test_without_mileage_the_same_seller_contact_decides(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a", phone="+7 (999) 111-22-33")
    same_seller = _post(db, NO_MILEAGE, "@cars_b", phone="8 999 111 22 33")
    other_seller = _post(db, NO_MILEAGE, "@cars_c", phone="+7 912 000-00-00", seller="someone")
    _run(db, first)
    assert _run(db, same_seller)[0].status is PostStatus.DUPLICATE
    # Another seller's Camry 2018 at the same price is another car: it is published.
    assert _run(db, other_seller)[0].status is PostStatus.READY


def test_a_price_change_is_a_new_publication(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a")
    cheaper = _post(db, CHEAPER, "@cars_a")
    _run(db, first)
    result, enqueued = _run(db, cheaper)
    assert result.status is PostStatus.READY and enqueued == [cheaper]


def test_a_repost_after_the_window_is_published_again_and_zero_turns_the_check_off(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a")
    _run(db, first)
    with db.begin() as session:
        post = session.get(Post, first)
        post.status, post.published_at = PostStatus.PUBLISHED, utcnow() - timedelta(days=15)
        post.processed_at = post.published_at
    assert _run(db, _post(db, ORIGINAL, "@cars_b"))[0].status is PostStatus.READY  # 15 days > 14
    assert _run(db, _post(db, ORIGINAL, "@cars_c"), Filters(duplicate_window_days=0))[0].status is PostStatus.READY


def test_only_published_or_pending_posts_are_originals(db) -> None:
    rejected = _post(db, ORIGINAL, "@cars_a")
    _run(db, rejected, Filters(duplicate_window_days=14, max_price=1_000_000))
    assert _status(db, rejected)[0] is PostStatus.REJECTED
    again = _post(db, ORIGINAL, "@cars_b")
    assert _run(db, again)[0].status is PostStatus.READY  # the rejected copy was never published
    third = _post(db, ORIGINAL, "@cars_c")
    assert _run(db, third)[0].status is PostStatus.DUPLICATE
    assert _status(db, third) == (PostStatus.DUPLICATE, again)


def test_five_channels_one_publication(db) -> None:
    """The issue's case: the same ad in five channels is published once."""
    texts = [ORIGINAL, REWORDED, "✅ " + ORIGINAL, ORIGINAL.replace("Продам", "Продаю"), REWORDED.lower()]
    ids = [_post(db, text, f"@cars_{n}") for n, text in enumerate(texts)]
    enqueued = [pid for pid in ids for pid in _run(db, pid)[1]]
    assert enqueued == [ids[0]]
    with db() as session:
        stats = database_stats(session)
    assert stats.duplicates == 4 and stats.posts.by_status["duplicate"] == 4 and stats.posts.by_status["ready"] == 1


def test_two_copies_analysed_at_once_give_one_publication(db) -> None:
    ids = [_post(db, text, f"@cars_{n}") for n, text in enumerate((ORIGINAL, REWORDED, ORIGINAL + " торг"))]
    enqueued: list[int] = []
    barrier = threading.Barrier(len(ids))

    def run(pid: int) -> None:
        barrier.wait()
        enqueued.extend(_run(db, pid)[1])

    threads = [threading.Thread(target=run, args=(pid,)) for pid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(enqueued) == 1
    with db() as session:
        statuses = sorted(s.value for s in session.scalars(select(Post.status).where(Post.id.in_(ids))))
    assert statuses == ["duplicate", "duplicate", "ready"]


def test_post_show_links_the_duplicate_to_the_first_post(db) -> None:
    first = _post(db, ORIGINAL, "@cars_a")
    copy = _post(db, REWORDED, "@cars_b")
    _run(db, first)
    _run(db, copy)
    with db() as session:
        shown = describe_post(session, copy)
        assert shown.status is PostStatus.DUPLICATE and shown.duplicate_of == first
        assert shown.duplicate_of_link == describe_post(session, first).link
        assert shown.car is not None and shown.car.price == 2_150_000  # the car data is kept
        assert describe_post(session, first).duplicate_of is None


def test_identity_rules() -> None:
    car = AdIdentity(text_hash="a", brand="toyota", model="camry", year=2018, mileage=87000, price=2150000)
    assert car.same_ad(AdIdentity(text_hash="a", price=None))  # the same text
    assert not car.same_ad(AdIdentity(text_hash="a", price=1))  # ... but not at another price
    other_mileage = AdIdentity(text_hash="b", brand="toyota", model="camry", year=2018, mileage=120000,
                               price=2150000, phone="9991112233")
    assert not car.same_ad(other_mileage)
    assert not AdIdentity(text_hash="c").same_ad(AdIdentity(text_hash="d"))
    assert normalize_phone("+7 (999) 111-22-33") == normalize_phone("89991112233") == "9991112233"
    assert identity(None, None, seller="@Dealer").seller == "dealer"


def test_manual_moderation_keeps_a_passing_post_pending_and_its_reposts_are_duplicates(db) -> None:
    manual = Filters(duplicate_window_days=14, manual_moderation=True)
    first = _post(db, ORIGINAL, "@cars_a")
    result, enqueued = _run(db, first, manual)
    assert result.status is PostStatus.PENDING and enqueued == [] and "waiting for an admin" in result.reason
    repost = _post(db, REWORDED, "@cars_b")
    assert _run(db, repost, manual)[0].status is PostStatus.DUPLICATE
    assert _status(db, repost) == (PostStatus.DUPLICATE, first)


def test_moderation_setting() -> None:
    from cars_bot.config import ConfigError, load_settings

    assert load_settings({}, cwd=Path("/nonexistent")).moderation == "auto"
    assert Filters.from_settings(load_settings({"MODERATION": "Manual"}, cwd=Path("/nonexistent"))).manual_moderation
    with pytest.raises(ConfigError, match="MODERATION must be one of auto, manual"):
        load_settings({"MODERATION": "sometimes"}, cwd=Path("/nonexistent"))
    with pytest.raises(ConfigError, match="DUPLICATE_WINDOW_DAYS must be an integer from 0 to 365"):
        load_settings({"DUPLICATE_WINDOW_DAYS": "400"}, cwd=Path("/nonexistent"))
