"""The pipeline with the real OpenAI client against a local fake server: requests per post, usage,
fallback and refusal."""

import pytest
from sqlalchemy import select

from cars_bot.ai.pipeline import Filters, ProcessResult, backend_for, process_post
from cars_bot.config import load_settings
from cars_bot.db.models import AIUsage, Post, PostStatus
from cars_bot.errors import PermanentError
from cars_bot.posts import store_post
from tests.cars_bot.ai.fake_openai import FakeOpenAI

SALE = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Кожаный салон, "
        "подогрев сидений. Москва. Цена 2 150 000 ₽")
BUYER = "Куплю Kia Rio до 700к, рассмотрю все варианты, пишите в личку"
REPLY = {"is_sale": True, "confidence": 0.97, "reason": "продажа автомобиля с ценой",
         "car": {"brand": "Toyota", "model": "Camry", "year": 2018, "price": 2150000, "mileage": 87000,
                 "engine_volume": "2.5", "transmission": "automatic", "fuel": None, "owners": 1, "city": "Москва",
                 "equipment": "кожаный салон, подогрев сидений", "condition": None, "autoteka_status": "unknown",
                 "market_price": None, "price_justification": None},
         "summary": "Кожаный салон, подогрев сидений."}


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def backend(server, tmp_path):
    settings = load_settings({"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": server.base_url,
                              "OPENAI_TIMEOUT": "5"}, cwd=tmp_path)
    return backend_for(settings)


def _process(db, backend, text: str, channel: str = "@cars") -> ProcessResult:
    with db.begin() as session:
        post, _ = store_post(session, channel=channel, text=text)
        session.flush()
        post_id = post.id
    return process_post(post_id, task_id=f"t-{post_id}", sessions=db, backend=backend, filters=Filters(),
                        enqueue_publish=lambda _pid: None)


def test_one_request_per_sale_zero_for_non_sales_and_duplicates(db, server, backend) -> None:
    assert backend.name == "openai"
    server.queue_completion(REPLY, prompt_tokens=400, completion_tokens=150)
    sale = _process(db, backend, SALE)
    assert sale.status is PostStatus.READY and sale.backend == "openai"
    assert len(server.requests) == 1
    body = server.requests[0].json
    assert body["model"] == "gpt-4o-mini" and "response_format" in body

    assert _process(db, backend, BUYER).status is PostStatus.REJECTED
    assert _process(db, backend, "🔥 " + SALE.upper(), channel="@other").status is PostStatus.READY  # a repost
    assert len(server.requests) == 1  # neither cost a request

    with db() as session:
        usage = session.scalars(select(AIUsage)).all()
        assert len(usage) == 1 and usage[0].total_tokens == 550 and usage[0].cost_usd > 0
        assert usage[0].model.startswith("gpt-4o-mini")


def test_openai_down_falls_back_to_rules(db, server, backend) -> None:
    for _ in range(3):
        server.queue_error(500, "upstream down", headers={"retry-after-ms": "10"})  # the SDK retries at once
    result = _process(db, backend, SALE)
    assert result.status is PostStatus.READY and result.backend == "rules-fallback"
    assert len(server.requests) == 3


def test_refusal_is_a_recorded_failure(db, server, backend) -> None:
    server.queue_completion(None, refusal="I can't help with that.")
    with pytest.raises(PermanentError):
        _process(db, backend, SALE)
    with db() as session:
        post = session.scalar(select(Post))
        assert post.status == PostStatus.FAILED and "refus" in post.status_reason.lower()
