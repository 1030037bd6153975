"""OpenAIBackend with the real ``openai`` client against a local fake chat-completions server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cars_bot.ai.openai_backend import MAX_INPUT_CHARS, OpenAIBackend
from cars_bot.ai.rules import FALLBACK_SUMMARY
from cars_bot.errors import NotConfigured, PermanentError, TransientError

from .fake_openai import FakeOpenAI

SALE_TEXT = (
    "Продам BMW 3 серии 2008 года, 2.5 автомат. Пробег 150к, 2 владельца, зеленая автотека. "
    "Кожаный салон, климат-контроль. Цена 850 тыс. Москва"
)
SALE_REPLY: dict[str, Any] = {
    "is_sale": True,
    "confidence": 0.97,
    "reason": "Продажа конкретного автомобиля с ценой.",
    "car": {
        "brand": "bmw", "model": "3 серии", "year": 2008, "price": 850000, "mileage": 150000,
        "engine_volume": "2.5", "transmission": "автомат", "fuel": None, "owners": 2, "city": "Москва",
        "equipment": "кожаный салон, климат-контроль", "condition": None, "autoteka_status": "green",
        "market_price": None, "price_justification": None,
    },
    "summary": "Кожаный салон, климат-контроль.",
}
NOT_SALE_REPLY = {"is_sale": False, "confidence": 0.93, "reason": "Запрос покупателя.", "car": None, "summary": None}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


_opened: list[OpenAIBackend] = []


@pytest.fixture(autouse=True)
def _close_backends() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


#: A Retry-After short enough to keep the client's own retries quick in these tests.
QUICK_RETRY = {"retry-after-ms": "10"}


def make_backend(server: FakeOpenAI, **kwargs: Any) -> OpenAIBackend:
    options: dict[str, Any] = {"base_url": server.base_url, "timeout": 2.0}
    options.update(kwargs)
    backend = OpenAIBackend("sk-test", "gpt-4o-mini", **options)
    _opened.append(backend)
    return backend


def test_success_makes_one_request_with_the_schema_and_the_model(server: FakeOpenAI) -> None:
    server.queue_completion(SALE_REPLY, prompt_tokens=1000, completion_tokens=500)
    analysis, usage = make_backend(server).analyse(SALE_TEXT)

    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.json
    assert body["model"] == "gpt-4o-mini"
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert set(schema["required"]) == {"is_sale", "confidence", "reason", "car", "summary"}
    car_schema = schema["$defs"]["CarReply"]
    assert car_schema["additionalProperties"] is False
    assert "default" not in json.dumps(schema)  # strict mode rejects defaults
    system, user = body["messages"]
    assert system["role"] == "system" and "Ничего не выдумывай" in system["content"]
    assert "50–100 слов" in system["content"]
    assert SALE_TEXT in user["content"]

    assert analysis.backend == "openai"
    assert analysis.classification.is_sale is True
    assert analysis.classification.confidence == pytest.approx(0.97)
    car = analysis.car
    assert car is not None
    assert (car.brand, car.model, car.year, car.price, car.mileage) == ("BMW", "3 Series", 2008, 850000, 150000)
    assert (car.transmission, car.engine_volume, car.autoteka_status) == ("automatic", "2.5", "green")
    assert analysis.summary == "Кожаный салон, климат-контроль."

    # Real usage from the response, priced by the dated snapshot's family (gpt-4o-mini: 0.15 / 0.60).
    assert usage.model == "gpt-4o-mini-2024-07-18"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 500, 1500)
    assert usage.cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1_000_000)


def test_not_a_sale_has_no_car_and_no_summary(server: FakeOpenAI) -> None:
    server.queue_completion(NOT_SALE_REPLY)
    analysis, _usage = make_backend(server).analyse("Куплю Камри до 1.5 млн")
    assert analysis.classification.is_sale is False
    assert analysis.car is None and analysis.summary is None
    assert len(server.requests) == 1


def test_429_is_retried_by_the_client_then_succeeds(server: FakeOpenAI) -> None:
    server.queue_error(429, "Rate limit reached", headers=QUICK_RETRY)
    server.queue_completion(SALE_REPLY)
    analysis, _usage = make_backend(server).analyse(SALE_TEXT)
    assert analysis.classification.is_sale is True
    assert len(server.requests) == 2
    assert server.requests[0].json == server.requests[1].json  # the same request, sent again


def test_5xx_is_retried_then_succeeds(server: FakeOpenAI) -> None:
    server.queue_error(500, "The server had an error", headers=QUICK_RETRY)
    server.queue_error(503, "Overloaded", headers=QUICK_RETRY)
    server.queue_completion(SALE_REPLY)
    analysis, _usage = make_backend(server).analyse(SALE_TEXT)
    assert analysis.car is not None
    assert len(server.requests) == 3


def test_persistent_5xx_raises_transient_after_max_attempts(server: FakeOpenAI) -> None:
    for _ in range(3):
        server.queue_error(502, "Bad gateway", headers=QUICK_RETRY)
    server.queue_completion(SALE_REPLY)  # never asked for: the attempts are used up
    with pytest.raises(TransientError, match="HTTP 502") as caught:
        make_backend(server, max_attempts=3).analyse(SALE_TEXT)
    assert len(server.requests) == 3  # max_attempts counts requests, the first one included
    assert server.pending() == 1
    assert caught.value.retry_after == pytest.approx(0.01)  # the server's last word on when to come back


def test_5xx_without_retry_after_leaves_the_delay_to_the_task_layer(server: FakeOpenAI) -> None:
    server.queue_error(503, "Overloaded")
    with pytest.raises(TransientError) as caught:
        make_backend(server, max_attempts=1).analyse(SALE_TEXT)
    assert len(server.requests) == 1
    assert caught.value.retry_after is None  # the base task's own backoff applies


def test_429_retry_after_survives_into_the_transient_error(server: FakeOpenAI) -> None:
    server.queue_error(429, headers=QUICK_RETRY)
    server.queue_error(429, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        make_backend(server, max_attempts=2).analyse(SALE_TEXT)
    assert caught.value.retry_after == 7.0
    assert len(server.requests) == 2


@pytest.mark.timeout(30)  # a regression would sleep two minutes in the client before failing
@pytest.mark.parametrize("retry_after", ["120", "600"])  # within and beyond what the client would sleep through
def test_long_retry_after_is_handed_to_the_task_layer_instead_of_slept(server: FakeOpenAI, retry_after: str) -> None:
    server.queue_error(429, headers={"Retry-After": retry_after})
    server.queue_completion(SALE_REPLY)  # would answer a retry: there must be none
    with pytest.raises(TransientError, match="asked to wait") as caught:
        make_backend(server, max_inline_wait=30).analyse(SALE_TEXT)
    assert caught.value.retry_after == float(retry_after)
    assert len(server.requests) == 1 and server.pending() == 1


def test_retry_after_within_the_inline_limit_is_waited_for_by_the_client(server: FakeOpenAI) -> None:
    server.queue_error(503, headers={"Retry-After": "0.05"})
    server.queue_error(503, headers={"Retry-After": "0.5"})
    server.queue_completion(SALE_REPLY)
    with pytest.raises(TransientError) as caught:
        make_backend(server, max_inline_wait=0.2).analyse(SALE_TEXT)
    assert len(server.requests) == 2  # 0.05 s was waited for and retried; 0.5 s went to the task layer
    assert caught.value.retry_after == 0.5 and server.pending() == 1


def test_timeout_is_retried_then_raises_transient(server: FakeOpenAI) -> None:
    server.queue_completion(SALE_REPLY, delay=1.0)
    server.queue_completion(SALE_REPLY, delay=1.0)
    with pytest.raises(TransientError, match="APITimeoutError"):
        make_backend(server, timeout=0.2, max_attempts=2).analyse(SALE_TEXT)
    assert len(server.requests) == 2


def test_timeout_then_success(server: FakeOpenAI) -> None:
    server.queue_completion(SALE_REPLY, delay=1.0)
    server.queue_completion(SALE_REPLY)
    analysis, _usage = make_backend(server, timeout=0.2).analyse(SALE_TEXT)
    assert analysis.classification.is_sale is True
    assert len(server.requests) == 2


def test_malformed_json_content_is_permanent_and_not_retried(server: FakeOpenAI) -> None:
    server.queue_completion('{"is_sale": true, "confidence": 0.9, "reason": "обрыв')
    with pytest.raises(PermanentError, match="schema"):
        make_backend(server).analyse(SALE_TEXT)
    assert len(server.requests) == 1


@pytest.mark.parametrize("content", [
    {"is_sale": "maybe", "confidence": 0.9, "reason": "?", "car": None, "summary": None},
    {"is_sale": True, "confidence": 5, "reason": "слишком уверен", "car": None, "summary": None},
    {"confidence": 0.9, "reason": "нет is_sale"},
    ["not", "an", "object"],
])
def test_schema_invalid_content_is_permanent(server: FakeOpenAI, content: Any) -> None:
    server.queue_completion(json.dumps(content))
    with pytest.raises(PermanentError):
        make_backend(server).analyse(SALE_TEXT)
    assert len(server.requests) == 1


def test_refusal_is_permanent(server: FakeOpenAI) -> None:
    server.queue_completion(None, refusal="I'm sorry, I can't help with that.")
    with pytest.raises(PermanentError, match="refused"):
        make_backend(server).analyse(SALE_TEXT)
    assert len(server.requests) == 1


def test_truncated_answer_is_permanent(server: FakeOpenAI) -> None:
    server.queue_completion('{"is_sale": tr', finish_reason="length")
    with pytest.raises(PermanentError, match="LengthFinishReasonError"):
        make_backend(server).analyse(SALE_TEXT)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent_and_not_retried(server: FakeOpenAI, status: int) -> None:
    server.queue_error(status, "nope")
    with pytest.raises(PermanentError, match=f"HTTP {status}"):
        make_backend(server).analyse(SALE_TEXT)
    assert len(server.requests) == 1


def test_connection_refused_is_transient() -> None:
    with FakeOpenAI() as gone:
        base_url = gone.base_url
    backend = OpenAIBackend("sk-test", "gpt-4o-mini", base_url=base_url, timeout=1.0, max_attempts=2)
    _opened.append(backend)
    with pytest.raises(TransientError, match="APIConnectionError") as caught:
        backend.analyse(SALE_TEXT)
    assert caught.value.retry_after is None


def test_text_is_cut_to_3000_characters(server: FakeOpenAI) -> None:
    server.queue_completion(NOT_SALE_REPLY)
    text = "а" * MAX_INPUT_CHARS + "ХВОСТ" * 400
    make_backend(server).analyse(text)
    user = server.requests[0].json["messages"][1]["content"]
    assert "а" * MAX_INPUT_CHARS in user and "ХВОСТ" not in user


def test_empty_text_is_permanent_without_a_request(server: FakeOpenAI) -> None:
    with pytest.raises(PermanentError):
        make_backend(server).analyse("   \n ")
    assert server.requests == []


def test_sale_without_summary_gets_the_deterministic_one(server: FakeOpenAI) -> None:
    server.queue_completion({**SALE_REPLY, "summary": None})
    analysis, _usage = make_backend(server).analyse(SALE_TEXT)
    assert analysis.summary and analysis.summary != FALLBACK_SUMMARY
    assert "климат-контроль" in analysis.summary and "850" not in analysis.summary


def test_long_summary_is_clipped_to_100_words(server: FakeOpenAI) -> None:
    long_summary = " ".join(["Кожаный салон, климат-контроль, подогрев сидений."] * 40)
    server.queue_completion({**SALE_REPLY, "summary": long_summary})
    analysis, _usage = make_backend(server).analyse(SALE_TEXT)
    assert analysis.summary is not None and len(analysis.summary.split()) <= 100


def test_out_of_set_values_become_none(server: FakeOpenAI) -> None:
    car = {**SALE_REPLY["car"], "transmission": "полуавтомат", "fuel": "керосин", "autoteka_status": "жёлтая"}
    server.queue_completion({**SALE_REPLY, "car": car})
    analysis, _usage = make_backend(server).analyse(SALE_TEXT)
    assert analysis.car is not None
    assert (analysis.car.transmission, analysis.car.fuel, analysis.car.autoteka_status) == (None, None, "unknown")


def test_price_table_and_unknown_models(server: FakeOpenAI) -> None:
    server.queue_completion(NOT_SALE_REPLY, model="my-finetune", prompt_tokens=2_000_000, completion_tokens=0)
    backend = make_backend(server, price_table={"my-finetune": (1.0, 2.0)})
    _analysis, usage = backend.analyse("текст")
    assert usage.cost_usd == pytest.approx(2.0)
    assert backend.cost_usd("gpt-4o-2024-08-06", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert backend.cost_usd("some-other-model", 10, 10) is None


def test_missing_api_key_is_not_configured() -> None:
    with pytest.raises(NotConfigured):
        OpenAIBackend("", "gpt-4o-mini")


def test_importing_the_ai_package_does_not_import_openai() -> None:
    code = ("import sys, cars_bot.ai, cars_bot.ai.rules, cars_bot.ai.text, cars_bot.ai.openai_backend; "
            "print('openai' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
