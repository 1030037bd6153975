"""Posts read back for operators as typed values: one described, the newest listed, statuses polled."""

import pytest

from cars_bot.ai.pipeline import Filters, RulesBackend, process_post
from cars_bot.db.models import PostStatus, Publication, PublicationStatus, Transmission
from cars_bot.posts import describe_post, list_posts, parse_status, post_statuses, store_post

SALE = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Кожаный салон, "
        "подогрев сидений, камера. Москва. Цена 2 150 000 ₽")
BUYER = "Куплю Kia Rio до 700к, рассмотрю все варианты, пишите в личку"


def _stored_and_processed(db) -> tuple[int, int]:
    with db.begin() as session:
        sale, _ = store_post(session, channel="@cars_msk", text=SALE)
        buyer, _ = store_post(session, channel="@cars_msk", text=BUYER)
        session.flush()
        ids = sale.id, buyer.id
    for post_id in ids:
        process_post(post_id, task_id=f"t-{post_id}", sessions=db, backend=RulesBackend(), filters=Filters(),
                     enqueue_publish=lambda _post_id: None)
    return ids


def test_a_post_is_described_with_its_car_and_publication(db) -> None:
    sale_id, buyer_id = _stored_and_processed(db)
    with db.begin() as session:
        session.add(Publication(post_id=sale_id, status=PublicationStatus.SENT, target="outbox", text="<b>Camry</b>",
                                message_ids=[7]))
    with db() as session:
        sale, buyer, missing = (describe_post(session, pid) for pid in (sale_id, buyer_id, 10**6))
    assert missing is None
    assert (sale.channel, sale.status, sale.text) == ("cars_msk", PostStatus.READY, SALE)
    assert sale.car is not None and (sale.car.brand, sale.car.year, sale.car.transmission) == \
        ("Toyota", 2018, Transmission.AUTOMATIC)
    assert sale.publication is not None and (sale.publication.target, sale.publication.message_ids) == ("outbox", [7])
    assert buyer.status == PostStatus.REJECTED and buyer.reason and buyer.car is None and buyer.publication is None


def test_posts_are_listed_newest_first_and_filtered_by_status(db) -> None:
    sale_id, buyer_id = _stored_and_processed(db)
    with db() as session:
        every = list_posts(session)
        rejected = list_posts(session, PostStatus.REJECTED)
        statuses = post_statuses(session, [sale_id, buyer_id, 10**6])
    assert [row.id for row in every] == [buyer_id, sale_id]
    assert (every[1].brand, every[1].model, every[1].price) == ("Toyota", "Camry", 2150000)
    assert [row.id for row in rejected] == [buyer_id] and rejected[0].brand is None
    assert statuses == {sale_id: PostStatus.READY, buyer_id: PostStatus.REJECTED}


def test_an_unknown_status_names_the_valid_ones() -> None:
    assert parse_status("rejected") is PostStatus.REJECTED
    with pytest.raises(ValueError, match=r"unknown status 'nope': use one of .*published"):
        parse_status("nope")


@pytest.mark.db
def test_a_post_stored_by_hand_gets_its_channels_seller_contact_as_the_monitors_do(db) -> None:
    """`post add|import` and the monitor store a post the same way (cars_bot.posts.store_channel_post)."""
    from cars_bot.db.models import Channel

    with db.begin() as session:
        session.add(Channel(username="cars_msk", seller_phone="+79991234567", seller_username="seller"))
    with db.begin() as session:
        post, created = store_post(session, channel="@cars_msk", text="Продам Kia Rio 2017", message_id=7)
        assert created and (post.contact.phone, post.contact.telegram_username) == ("+79991234567", "seller")
        again, created = store_post(session, channel="@cars_msk", text="Продам Kia Rio 2017", message_id=7)
        assert not created and again.id == post.id
