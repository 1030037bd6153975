"""The pipeline with the real OpenAI client against a local fake server: requests per post, usage,
fallback and refusal."""

import pytest
from sqlalchemy import select

from cars_bot.ai.failures import FallbackReason
from cars_bot.ai.fallbacks import openai_health
from cars_bot.ai.openai_backend import OpenAIBackend, worst_case_seconds
from cars_bot.ai.pipeline import MAX_DEFER, Filters, ProcessResult, backend_for, process_post
from cars_bot.config import load_settings
from cars_bot.db.models import AIUsage, Post, PostStatus
from cars_bot.errors import PermanentError, TransientError
from cars_bot.posts import describe_post, store_post
from carsctl.health.checkup import Level, check_openai
from carsctl.health.overview import openai_problems
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


def _process(db, backend, text: str, channel: str = "@cars", may_defer: bool = False) -> ProcessResult:
    with db.begin() as session:
        post, _ = store_post(session, channel=channel, text=text)
        session.flush()
        post_id = post.id
    return process_post(post_id, task_id=f"t-{post_id}", sessions=db, backend=backend, filters=Filters(),
                        enqueue_publish=lambda _pid: None, may_defer=may_defer)


def _process_deferrable(db, backend, text: str) -> ProcessResult:
    """As a Celery task with retries left would run it."""
    return _process(db, backend, text, may_defer=True)


def _settings(db, server, tmp_path, **extra: str):
    return load_settings({"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": server.base_url,
                          "OPENAI_TIMEOUT": "5", "DATABASE_URL": str(db.kw["bind"].url.render_as_string(
                              hide_password=False)), **extra}, cwd=tmp_path)


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
    with db() as session:
        assert describe_post(session, result.post_id).backend_reason == FallbackReason.UNAVAILABLE.text


def test_a_transient_failure_is_retried_through_celery_before_any_fallback(db, server, backend) -> None:
    for _ in range(3):
        server.queue_error(500, "upstream down", headers={"retry-after-ms": "10"})
    with db.begin() as session:
        post, _ = store_post(session, channel="@cars", text=SALE)
        session.flush()
        post_id = post.id
    run = dict(task_id="task-1", sessions=db, backend=backend, filters=Filters(), enqueue_publish=lambda _pid: None)
    with pytest.raises(TransientError):
        process_post(post_id, may_defer=True, **run)  # retries left: Celery retries the task
    with db() as session:
        assert session.get(Post, post_id).status == PostStatus.PROCESSING
        assert session.scalars(select(AIUsage)).all() == []  # no fallback yet
    server.queue_completion(REPLY)
    result = process_post(post_id, may_defer=True, **run)  # the retry of the same task
    assert result.status is PostStatus.READY and result.backend == "openai"


def test_retry_after_reaches_celery(db, server, backend) -> None:
    server.queue_error(429, "Rate limit reached", headers={"retry-after": "120"})  # too long to sleep in a worker
    with pytest.raises(TransientError) as caught:
        _process_deferrable(db, backend, SALE)
    assert caught.value.retry_after == 120  # the task's countdown (cars_bot.tasks.base)
    assert len(server.requests) == 1


def test_a_wait_too_long_for_celery_falls_back(db, server, backend) -> None:
    server.queue_error(429, "slow down", headers={"retry-after": str(int(MAX_DEFER) + 60)})
    result = _process_deferrable(db, backend, SALE)
    assert result.status is PostStatus.READY and result.backend == "rules-fallback"
    assert len(server.requests) == 1


def test_quota_exhausted_falls_back_at_once_and_is_recorded_and_shown(db, server, backend, tmp_path) -> None:
    server.queue_completion(REPLY)
    assert _process(db, backend, SALE).backend == "openai"
    for _ in range(6):
        server.queue_error(429, "You exceeded your current quota", code="insufficient_quota",
                           headers={"retry-after-ms": "10"})
    first = _process_deferrable(db, backend, SALE.replace("2018", "2017"))
    second = _process_deferrable(db, backend, SALE.replace("2018", "2016"))
    assert len(server.requests) == 3  # one request each: no retry, no Celery wait
    assert (first.status, first.backend, second.backend) == (PostStatus.READY, "rules-fallback", "rules-fallback")
    with db() as session:
        shown = describe_post(session, first.post_id)
        assert shown.backend == "rules-fallback"
        assert shown.backend_reason == "OpenAI quota exhausted (insufficient_quota)"
        rows = session.scalars(select(AIUsage).where(AIUsage.backend == "rules-fallback")).all()
        assert [r.model for r in rows] == ["quota_exhausted", "quota_exhausted"]
        health = openai_health(session)
    lines = health.lines()
    assert lines[0].startswith("OpenAI: quota exhausted since ") and health.failing_since == rows[0].created_at
    assert lines[1] == "2 post(s) analysed by the fallback in the last hour"
    settings = _settings(db, server, tmp_path)
    assert openai_problems(settings) == lines  # `carsctl status`
    [finding] = check_openai(settings)  # `carsctl doctor`
    assert finding.level == Level.PROBLEM and "quota exhausted" in finding.message and "credit" in finding.fix

    server.clear()
    server.queue_completion(REPLY)  # credit added: OpenAI answers again
    assert _process(db, backend, SALE.replace("2018", "2015")).backend == "openai"
    with db() as session:
        assert openai_health(session).lines() == ["2 post(s) analysed by the fallback in the last hour"]


def test_a_rejected_model_falls_back_and_doctor_names_it(db, server, tmp_path) -> None:
    settings = _settings(db, server, tmp_path, OPENAI_MODEL="gpt-nonexistent")
    backend = backend_for(settings)
    server.queue_error(404, "The model `gpt-nonexistent` does not exist", code="model_not_found")
    result = _process_deferrable(db, backend, SALE)
    assert result.backend == "rules-fallback" and len(server.requests) == 1
    [finding] = check_openai(settings)
    assert finding.level == Level.PROBLEM and "OPENAI_MODEL" in finding.message and "gpt-nonexistent" in finding.fix


def test_doctor_is_quiet_when_openai_answers(db, server, backend, tmp_path) -> None:
    server.queue_completion(REPLY)
    _process(db, backend, SALE)
    [finding] = check_openai(_settings(db, server, tmp_path))
    assert finding.level == Level.OK


def test_ai_task_time_limits_cover_the_worst_case_of_one_analysis() -> None:
    from cars_bot.tasks import ai_tasks

    worst = worst_case_seconds(timeout=30.0, max_attempts=3, max_inline_wait=10.0)  # the defaults
    defaults = OpenAIBackend.__init__.__kwdefaults__
    assert (defaults["timeout"], defaults["max_attempts"], defaults["max_inline_wait"]) == (30.0, 3, 10.0)
    for task in (ai_tasks.classify_post_task, ai_tasks.extract_data_task, ai_tasks.generate_description_task,
                 ai_tasks.process_post_task):
        assert task.soft_time_limit >= worst, task.name
        assert task.time_limit > task.soft_time_limit


def test_refusal_is_a_recorded_failure(db, server, backend) -> None:
    server.queue_completion(None, refusal="I can't help with that.")
    with pytest.raises(PermanentError):
        _process(db, backend, SALE)
    with db() as session:
        post = session.scalar(select(Post))
        assert post.status == PostStatus.FAILED and "refus" in post.status_reason.lower()
