"""The OpenAI backend against the fake server: quota exhausted vs rate limit, x-should-retry, only the
parameters the model accepts, a rejected model, exact prices with cached tokens, schema bounds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cars_bot.ai.failures import FallbackReason, ModelRejected, OpenAIUnavailable
from cars_bot.ai.openai_backend import AnalysisReply, OpenAIBackend, accepts_temperature
from cars_bot.ai.prices import DEFAULT_PRICES, ModelPrice, parse_prices
from cars_bot.errors import PermanentError

from .fake_openai import FakeOpenAI

REPLY: dict[str, Any] = {"is_sale": False, "confidence": 0.9, "reason": "новость", "car": None, "summary": None}
QUICK_RETRY = {"retry-after-ms": "10"}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def make(server: FakeOpenAI) -> Iterator[Any]:
    opened: list[OpenAIBackend] = []

    def build(model: str = "gpt-4o-mini", **kwargs: Any) -> OpenAIBackend:
        backend = OpenAIBackend("sk-test", model, base_url=server.base_url, timeout=2.0, **kwargs)
        opened.append(backend)
        return backend

    yield build
    for backend in opened:
        backend.close()


# -- 1. insufficient_quota is not a rate limit; x-should-retry is obeyed --------------------------


def test_insufficient_quota_is_not_retried_and_says_so(server: FakeOpenAI, make: Any) -> None:
    for _ in range(3):
        server.queue_error(429, "You exceeded your current quota", code="insufficient_quota", headers=QUICK_RETRY)
    with pytest.raises(OpenAIUnavailable) as caught:
        make().analyse("текст")
    assert len(server.requests) == 1  # a rate limit would have been retried twice
    assert caught.value.reason is FallbackReason.QUOTA_EXHAUSTED and caught.value.retryable is False
    assert "quota" in str(caught.value)


def test_rate_limit_is_still_retried(server: FakeOpenAI, make: Any) -> None:
    server.queue_error(429, "Rate limit reached", code="rate_limit_exceeded", headers=QUICK_RETRY)
    server.queue_completion(REPLY)
    analysis, _usage = make().analyse("текст")
    assert analysis.classification.reason == "новость" and len(server.requests) == 2


def test_x_should_retry_false_stops_at_once_and_is_not_worth_a_celery_retry(server: FakeOpenAI,
                                                                          make: Any) -> None:
    server.queue_error(503, "overloaded", headers={"x-should-retry": "false", "retry-after": "300"})
    with pytest.raises(OpenAIUnavailable) as caught:
        make().analyse("текст")
    assert len(server.requests) == 1
    assert caught.value.reason is FallbackReason.NOT_RETRYABLE and caught.value.retryable is False


def test_x_should_retry_true_retries_a_client_error(server: FakeOpenAI, make: Any) -> None:
    server.queue_error(400, "try again", headers={"x-should-retry": "true", **QUICK_RETRY})
    server.queue_completion(REPLY)
    make().analyse("текст")
    assert len(server.requests) == 2


# -- 2. only the parameters the model accepts --------------------------------------------------


@pytest.mark.parametrize(("model", "sends"), [("gpt-4o-mini", True), ("gpt-4.1", True), ("o3-mini", False),
                                              ("o4-mini-2025-04-16", False), ("o1", False), ("gpt-5-mini", False)])
def test_temperature_is_sent_only_to_models_that_take_it(server: FakeOpenAI, make: Any, model: str,
                                                         sends: bool) -> None:
    assert accepts_temperature(model) is sends
    server.queue_completion(REPLY, model=model)
    make(model).analyse("текст")
    assert ("temperature" in server.requests[0].json) is sends


def test_a_model_rejecting_temperature_gets_requests_without_it(server: FakeOpenAI, make: Any) -> None:
    server.queue_error(400, "Unsupported parameter: 'temperature' is not supported with this model.",
                       code="unsupported_parameter", param="temperature")
    server.queue_completion(REPLY, model="my-reasoner")
    server.queue_completion(REPLY, model="my-reasoner")
    backend = make("my-reasoner")
    backend.analyse("текст")
    backend.analyse("текст")
    assert [("temperature" in r.json) for r in server.requests] == [True, False, False]


def test_an_unknown_model_is_reported_clearly_at_the_first_failure(server: FakeOpenAI, make: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    server.queue_error(404, "The model `gpt-9` does not exist or you do not have access to it.",
                       code="model_not_found")
    with pytest.raises(ModelRejected) as caught:
        make("gpt-9").analyse("текст")
    assert "'gpt-9' (OPENAI_MODEL) is not available" in str(caught.value)
    assert len(server.requests) == 1
    assert any("OPENAI_MODEL" in record.getMessage() for record in caplog.records if record.levelname == "ERROR")


def test_a_model_rejecting_another_parameter_is_a_rejected_model(server: FakeOpenAI, make: Any) -> None:
    server.queue_error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported",
                       code="unsupported_value", param="response_format")
    with pytest.raises(ModelRejected, match="rejects the parameter 'response_format'"):
        make("old-model").analyse("текст")


# -- 3. prices: exact names, cached tokens, a setting ------------------------------------------


def test_cached_input_tokens_cost_half_the_input_price(server: FakeOpenAI, make: Any) -> None:
    server.queue_completion(REPLY, model="gpt-4o-2024-08-06", prompt_tokens=1_000_000, completion_tokens=0,
                            cached_tokens=600_000)
    _analysis, usage = make("gpt-4o").analyse("текст")
    # 400k uncached at 2.50 + 600k cached at 1.25 per 1M
    assert usage.cached_tokens == 600_000 and usage.cost_usd == pytest.approx(1.0 + 0.75)


def test_prices_match_exact_model_names_only(make: Any) -> None:
    backend = make()
    assert backend.cost_usd("gpt-4o-2024-05-13", 1_000_000, 1_000_000) == pytest.approx(20.0)  # not gpt-4o's 12.5
    assert backend.cost_usd("gpt-4o-2099-01-01", 1_000_000, 0) is None  # no prefix guessing
    assert backend.cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)


def test_the_price_table_is_a_setting(server: FakeOpenAI, make: Any) -> None:
    from cars_bot.config import VARS, ConfigError, display_value, load_settings

    settings = load_settings({"OPENAI_PRICES": "my-finetune=1/2, gpt-4o-mini=0.2/0.8/0.05"})
    assert settings.openai_prices == ("my-finetune=1/2", "gpt-4o-mini=0.2/0.8/0.05")
    var = next(v for v in VARS if v.name == "OPENAI_PRICES")
    assert display_value(var, settings.openai_prices) == "my-finetune=1/2,gpt-4o-mini=0.2/0.8/0.05"  # config show
    backend = make(price_table=parse_prices(",".join(settings.openai_prices)))
    assert backend.prices["my-finetune"] == ModelPrice(1.0, 2.0)
    assert backend.cost_usd("gpt-4o-mini", 1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.05)
    assert backend.prices["gpt-4o"] == DEFAULT_PRICES["gpt-4o"]  # the defaults stay
    with pytest.raises(ConfigError, match="OPENAI_PRICES"):
        load_settings({"OPENAI_PRICES": "gpt-4o=cheap"})
    with pytest.raises(ValueError):
        parse_prices("gpt-4o")


# -- 4. schema bounds are checked after parsing, not sent ----------------------------------------


def _has_key(node: Any, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_has_key(v, key) for v in node)
    return False


def test_the_sent_schema_has_no_bounds_and_the_bounds_still_hold(server: FakeOpenAI, make: Any) -> None:
    server.queue_completion(REPLY)
    server.queue_completion({**REPLY, "confidence": 1.5})
    backend = make()
    backend.analyse("текст")
    schema = server.requests[0].json["response_format"]
    assert not _has_key(schema, "minimum") and not _has_key(schema, "maximum")
    assert not _has_key(AnalysisReply.model_json_schema(), "minimum")
    with pytest.raises(PermanentError, match="schema"):
        backend.analyse("текст")
    assert len(server.requests) == 2
