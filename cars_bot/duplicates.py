"""One ad, one publication: is a post that passed the filters a repost of an ad already published?

The same ad is often posted in several source channels, reworded or with other emoji. A post is the
SAME AD as an earlier one when the earlier post is published, or on its way to be (``ready``,
``publishing``, ``published``, or ``pending`` an admin's approval), within the last ``DUPLICATE_WINDOW_DAYS`` days, and:

1. their normalised texts are equal (:func:`cars_bot.ai.text.normalize_text`: case, emoji,
   punctuation and spacing do not count); or
2. the car is the same and so is the price: brand, model and year are known and equal in both,
   the price is known and equal, the mileage is equal when both state it, AND either the seller
   contact (phone digits or Telegram username, from the channel's sheet row) is the same, or both
   state the mileage (brand + model + year + mileage + price together identify one car).

A different price is never the same ad: a price change is a new publication. A post without a
known price matches only by its text. The repost is stored with the status ``duplicate`` and
``duplicate_of`` = the FIRST post of the ad (never another duplicate).

Two copies analysed at the same moment by two workers must not both pass: the check runs in the
transaction that records the outcome, which SQLite serialises (every transaction begins IMMEDIATE)
and PostgreSQL serialises by an advisory transaction lock on the price (or text hash), which both
copies of an ad share.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from cars_bot.db.models import CarData, Post, PostStatus, SellerContact, utcnow

#: Statuses of a post that is published or about to be: a later copy of the same ad is a duplicate.
PUBLISHED_OR_PENDING = (PostStatus.READY, PostStatus.PUBLISHING, PostStatus.PUBLISHED, PostStatus.PENDING)
#: Namespace of the PostgreSQL advisory lock (first key of pg_advisory_xact_lock(int, int)).
_LOCK_NAMESPACE = 1313


class CarFacts(Protocol):
    brand: str | None
    model: str | None
    year: int | None
    mileage: int | None
    price: int | None


@dataclass(frozen=True, slots=True)
class AdIdentity:
    """What identifies an ad: its normalised text hash, the car and price, the seller contact."""

    text_hash: str | None
    brand: str | None = None
    model: str | None = None
    year: int | None = None
    mileage: int | None = None
    price: int | None = None
    phone: str | None = None
    seller: str | None = None

    @property
    def has_car(self) -> bool:
        return bool(self.brand and self.model and self.year and self.price is not None)

    def same_contact(self, other: AdIdentity) -> bool:
        return bool((self.phone and self.phone == other.phone) or (self.seller and self.seller == other.seller))

    def same_ad(self, other: AdIdentity) -> bool:
        """True when `other` is the same ad (see the module docstring)."""
        if self.price is not None and other.price is not None and self.price != other.price:
            return False  # a price change is a new publication
        if self.text_hash and self.text_hash == other.text_hash:
            return True
        if not (self.has_car and other.has_car):
            return False
        if (self.brand, self.model, self.year) != (other.brand, other.model, other.year):
            return False
        both_mileage = self.mileage is not None and other.mileage is not None
        if both_mileage and self.mileage != other.mileage:
            return False
        return both_mileage or self.same_contact(other)


def normalize_phone(phone: str | None) -> str | None:
    """The last 10 digits of a phone number (+7 999..., 8 999... and 999... are the same)."""
    digits = re.sub(r"\D", "", phone or "")
    return digits[-10:] or None


def _word(value: str | None) -> str | None:
    return (" ".join(value.casefold().replace("ё", "е").split()) or None) if value else None


def identity(text_hash: str | None, car: CarFacts | None, phone: str | None = None,
             seller: str | None = None) -> AdIdentity:
    """An ad's identity from its text hash, car data and seller contact."""
    seller_key = (seller or "").strip().lstrip("@").casefold() or None
    if car is None:
        return AdIdentity(text_hash=text_hash, phone=normalize_phone(phone), seller=seller_key)
    return AdIdentity(text_hash=text_hash, brand=_word(car.brand), model=_word(car.model), year=car.year,
                      mileage=car.mileage, price=car.price, phone=normalize_phone(phone), seller=seller_key)


def find_original(session: Session, post: Post, car: CarFacts | None, window_days: int,
                  now: datetime | None = None) -> int | None:
    """The id of the first post of the same ad published (or about to be) within the window, or None.

    Call it inside the transaction that records the post's outcome (see the module docstring).
    `window_days` <= 0 turns the check off.
    """
    if window_days <= 0:
        return None
    contact = post.contact
    me = identity(post.text_hash, car, contact.phone if contact else None,
                  contact.telegram_username if contact else None)
    if me.text_hash is None and me.price is None:
        return None
    _serialize(session, me)
    cutoff = (now or utcnow()) - timedelta(days=window_days)
    when = func.coalesce(Post.published_at, Post.processed_at, Post.found_at)
    keys = [Post.text_hash == me.text_hash] if me.text_hash else []
    if me.price is not None:
        keys.append(CarData.price == me.price)
    query = (select(Post.text_hash, Post.id, CarData.brand, CarData.model, CarData.year, CarData.mileage,
                    CarData.price, SellerContact.phone, SellerContact.telegram_username)
             .outerjoin(CarData, CarData.post_id == Post.id)
             .outerjoin(SellerContact, SellerContact.post_id == Post.id)
             .where(Post.id != post.id, Post.status.in_(PUBLISHED_OR_PENDING), when >= cutoff, or_(*keys))
             .order_by(Post.id))
    for row in session.execute(query):
        other = identity(row.text_hash, _Car(row), row.phone, row.telegram_username)
        if me.same_ad(other):
            return int(row.id)
    return None


class _Car:
    def __init__(self, row: Any) -> None:
        self.brand, self.model, self.year = row.brand, row.model, row.year
        self.mileage, self.price = row.mileage, row.price


def _serialize(session: Session, me: AdIdentity) -> None:
    """On PostgreSQL, wait for any other transaction checking an ad with the same price (or text)."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the transaction began IMMEDIATE, so it is already the only writer
    basis = f"price:{me.price}" if me.price is not None else f"text:{me.text_hash}"
    key = int.from_bytes(hashlib.sha256(basis.encode()).digest()[:4], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _LOCK_NAMESPACE, "key": key})
