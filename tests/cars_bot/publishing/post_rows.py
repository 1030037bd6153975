"""Rows the publishing tests start from: a source channel, posts with car data, subscribers, seller contacts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from cars_bot.db.models import (
    AutotekaStatus,
    CarData,
    Channel,
    Post,
    PostStatus,
    SellerContact,
    Subscription,
    SubscriptionType,
    Transmission,
    User,
    utcnow,
)


def make_post(factory: sessionmaker[Session], *, status: PostStatus = PostStatus.READY, media: list[Any] | None = None,
              message_ids: list[int] | None = None, message_id: int = 1, summary: str | None = "Полная комплектация",
              **car: Any) -> int:
    """A source channel (once) and a post with car data; returns the post id."""
    car_values = {"brand": "BMW", "model": "3 серии", "year": 2015, "price": 850_000, "mileage": 150_000,
                  "engine_volume": "2.5", "transmission": Transmission.AUTOMATIC, "owners": 2,
                  "autoteka_status": AutotekaStatus.GREEN}
    car_values.update(car)
    with factory() as session, session.begin():
        channel = session.query(Channel).filter_by(username="source_cars").one_or_none()
        if channel is None:
            channel = Channel(username="source_cars", title="Source", seller_phone="+79990001122",
                              seller_username="seller_one")
            session.add(channel)
            session.flush()
        post = Post(channel_id=channel.id, message_id=message_id, text="Продам BMW", status=status,
                    media=media or [], message_ids=message_ids or [message_id], summary=summary)
        session.add(post)
        session.flush()
        session.add(CarData(post_id=post.id, **car_values))
        return post.id


def make_subscriber(factory: sessionmaker[Session], telegram_id: int = 555, *, active: bool = True,
                    ends_in: timedelta = timedelta(days=30)) -> int:
    """A user with one subscription (active or not, ending `ends_in` from now); returns the user id."""
    now = utcnow()
    with factory() as session, session.begin():
        user = User(telegram_id=telegram_id, first_name="Ivan")
        session.add(user)
        session.flush()
        session.add(Subscription(user_id=user.id, type=SubscriptionType.MONTHLY, is_active=active,
                                 starts_at=now - timedelta(days=1), ends_at=now + ends_in))
        return user.id


def add_seller_contact(factory: sessionmaker[Session], post_id: int, **values: Any) -> None:
    with factory() as session, session.begin():
        session.add(SellerContact(post_id=post_id, **values))
