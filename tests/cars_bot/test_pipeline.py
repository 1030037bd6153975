"""The post pipeline: claim, analyse, filter, store, enqueue publishing; idempotent under duplicates."""

import threading

import pytest
from sqlalchemy import func, select

from cars_bot.ai.pipeline import Filters, RulesBackend, process_post
from cars_bot.ai.schemas import Analysis, Classification, Usage
from cars_bot.db.models import AIUsage, CarData, Post, PostStatus
from cars_bot.errors import PermanentError
from cars_bot.posts import store_post

SALE = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Кожаный салон, "
        "подогрев сидений, камера. Москва. Цена 2 150 000 ₽")
BUYER = "Куплю Kia Rio до 700к, рассмотрю все варианты, пишите в личку"


class CountingBackend(RulesBackend):
    """The rules backend, counting calls and reporting usage as a paid backend would."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def analyse(self, text):
        with self.lock:
            self.calls += 1
        analysis, _ = super().analyse(text)
        return analysis.model_copy(update={"backend": self.name}), Usage(
            model="fake", prompt_tokens=100, completion_tokens=40, total_tokens=140, cost_usd=0.0002)


def _post(db, text: str, channel: str = "@cars_msk", message_id: int | None = None) -> int:
    with db.begin() as session:
        post, _ = store_post(session, channel=channel, text=text, message_id=message_id)
        session.flush()
        return post.id


def _run(db, post_id: int, backend=None, task_id: str = "task-1", filters: Filters | None = None,
         enqueued: list | None = None):
    enqueued = [] if enqueued is None else enqueued
    result = process_post(post_id, task_id=task_id, sessions=db, backend=backend or RulesBackend(),
                          filters=filters or Filters(), enqueue_publish=enqueued.append)
    return result, enqueued


def test_sale_ad_is_extracted_stored_and_handed_to_publishing(db) -> None:
    post_id = _post(db, SALE)
    result, enqueued = _run(db, post_id)
    assert result.status is PostStatus.READY and result.publish_enqueued and enqueued == [post_id]
    with db() as session:
        post = session.get(Post, post_id)
        assert post.status is PostStatus.READY and post.is_sale and post.summary
        car = post.car
        assert (car.brand, car.model, car.year, car.price, car.mileage) == ("Toyota", "Camry", 2018, 2150000, 87000)
        assert car.transmission.value == "automatic"


def test_buyer_request_is_rejected_with_a_reason(db) -> None:
    post_id = _post(db, BUYER)
    result, enqueued = _run(db, post_id)
    assert result.status is PostStatus.REJECTED and enqueued == []
    with db() as session:
        post = session.get(Post, post_id)
        assert post.status is PostStatus.REJECTED and post.status_reason.startswith("not a sale ad")
        assert post.car is None


@pytest.mark.parametrize(("filters", "fragment"), [
    (Filters(min_price=3_000_000), "below the minimum"),
    (Filters(max_price=1_000_000), "above the maximum"),
    (Filters(excluded_words=("кожаный",)), "excluded word"),
    (Filters(min_confidence=1.0), "below the threshold"),
])
def test_filters_reject_and_record_why(db, filters: Filters, fragment: str) -> None:
    post_id = _post(db, SALE)
    result, enqueued = _run(db, post_id, filters=filters)
    assert result.status is PostStatus.REJECTED and fragment in result.reason and enqueued == []


def test_missing_post_and_empty_text_are_clear_outcomes(db) -> None:
    assert _run(db, 999_999)[0].status == "missing"
    post_id = _post(db, "   ")
    result, _ = _run(db, post_id)
    assert result.status is PostStatus.REJECTED and result.reason == "the post has no text"


def test_running_twice_gives_one_car_row_and_one_enqueue(db) -> None:
    post_id = _post(db, SALE)
    enqueued: list[int] = []
    _run(db, post_id, task_id="a", enqueued=enqueued)
    second, _ = _run(db, post_id, task_id="b", enqueued=enqueued)
    assert second.status is PostStatus.READY and second.publish_enqueued is False
    assert enqueued == [post_id]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(CarData)) == 1


def test_concurrent_duplicates_process_once(db) -> None:
    post_id = _post(db, SALE)
    enqueued: list[int] = []
    backend = CountingBackend()
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        _run(db, post_id, backend=backend, task_id=f"dup-{i}", enqueued=enqueued)[0])) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert enqueued == [post_id] and backend.calls == 1
    assert sum(1 for r in results if r.publish_enqueued) == 1
    with db() as session:
        assert session.scalar(select(func.count()).select_from(CarData)) == 1


def test_redelivery_after_a_crash_resumes_the_claim(db) -> None:
    post_id = _post(db, SALE)
    with db.begin() as session:  # the first delivery claimed the post, then its worker died
        post = session.get(Post, post_id)
        post.status, post.claimed_by = PostStatus.PROCESSING, "crashed-task"
        session.add(CarData(post_id=post_id, brand="Toyota"))  # partial work of the first run
    other, _ = _run(db, post_id, task_id="someone-else")
    assert other.status is PostStatus.PROCESSING and other.publish_enqueued is False
    resumed, enqueued = _run(db, post_id, task_id="crashed-task")
    assert resumed.status is PostStatus.READY and enqueued == [post_id]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(CarData)) == 1
        assert session.scalar(select(CarData.model)) == "Camry"


def test_repost_in_three_channels_costs_one_analysis(db) -> None:
    backend = CountingBackend()
    ids = [_post(db, SALE.replace("Продам", prefix), channel=ch) for prefix, ch in
           (("Продам", "@a"), ("🔥 ПРОДАМ", "@b"), ("продам!!", "@c"))]
    for post_id in ids:
        assert _run(db, post_id, backend=backend)[0].status is PostStatus.READY
    assert backend.calls == 1
    with db() as session:
        assert session.scalar(select(func.count()).select_from(AIUsage)) == 1
        assert session.scalar(select(func.sum(AIUsage.total_tokens))) == 140


def test_permanent_backend_failure_is_recorded_on_the_post(db) -> None:
    class Refusing(RulesBackend):
        name = "refusing"

        def analyse(self, text):
            raise PermanentError("the model refused")

    post_id = _post(db, SALE)
    with pytest.raises(PermanentError):
        _run(db, post_id, backend=Refusing())
    with db() as session:
        post = session.get(Post, post_id)
        assert post.status is PostStatus.FAILED and "refused" in post.status_reason
    # a failed post can be re-run (carsctl task retry) and then succeeds
    assert _run(db, post_id, task_id="retry")[0].status is PostStatus.READY


def test_values_outside_the_enums_never_reach_the_database(db) -> None:
    class Odd(RulesBackend):
        name = "odd"

        def analyse(self, text):
            car = {"brand": "bmw", "model": "x5", "transmission": "полуавтомат", "fuel": "водород",
                   "autoteka_status": "so-so", "year": 2015, "price": 2_800_000}
            return Analysis.model_validate({"classification": Classification(is_sale=True, confidence=0.95),
                                            "car": car, "summary": "ok", "backend": "odd"}), None

    post_id = _post(db, SALE)
    assert _run(db, post_id, backend=Odd())[0].status is PostStatus.READY
    with db() as session:
        car = session.scalar(select(CarData))
        assert car.brand == "BMW" and car.transmission is None and car.fuel is None
        assert car.autoteka_status.value == "unknown"


def test_store_post_deduplicates_by_channel_and_message_id(db) -> None:
    with db.begin() as session:
        first, created = store_post(session, channel="https://t.me/Cars_MSK", text=SALE, message_id=5)
        again, created_again = store_post(session, channel="@cars_msk", text="edited", message_id=5)
        auto, _ = store_post(session, channel="@cars_msk", text=BUYER)
        assert created and not created_again and again.id == first.id
        assert auto.message_id == 6 and first.channel.total_posts == 2
        assert first.message_ids == []  # a text-only post has no media messages
