"""A fake OpenAI server for tests: a real HTTP server on 127.0.0.1 (port 0) that speaks enough of
the chat-completions API for the real ``openai`` client.

Queue the answers a test needs, point the client at :attr:`FakeOpenAI.base_url`, then read what the
client sent in :attr:`FakeOpenAI.requests`::

    with FakeOpenAI() as server:
        server.queue_error(429, headers={"retry-after-ms": "10"})
        server.queue_completion({"is_sale": False, "confidence": 0.9, "reason": "news"})
        backend = OpenAIBackend("sk-test", "gpt-4o-mini", base_url=server.base_url)
        ...
        assert len(server.requests) == 2

An unqueued request gets HTTP 500 with "no response queued", so a test that sends more requests
than it expects fails loudly.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI", "FakeResponse", "RecordedRequest", "chat_completion"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), f"request body is not a JSON object: {self.body!r}"
        return self.body


@dataclass
class FakeResponse:
    """One queued answer: status, JSON (or raw text) body, headers, and a delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def chat_completion(
    content: str | dict[str, Any] | None,
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    refusal: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 420,
    completion_tokens: int = 180,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """A chat-completions response body; a dict ``content`` is sent as its JSON text."""
    text = json.dumps(content, ensure_ascii=False) if isinstance(content, dict) else content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": refusal},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            **({} if cached_tokens is None else {"prompt_tokens_details": {"cached_tokens": cached_tokens}}),
        },
    }


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body (`code` and `param` as OpenAI sends them, e.g. insufficient_quota)."""
    kinds = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "invalid_api_key"}
    kind = kinds.get(status, "server_error")
    return {"error": {"message": message, "type": code or kind, "param": param, "code": code or kind}}


class _QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client drops its connection.

    Clients close connections mid-exchange on purpose in these tests (a timeout, or a long
    Retry-After handed to the task layer); that is not an error of the fake.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The server; use it as a context manager (or call :meth:`start` and :meth:`stop`)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._responses: deque[FakeResponse] = deque()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-openai", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- queueing --------------------------------------------------------------------------------

    def queue(self, response: FakeResponse) -> None:
        with self._lock:
            self._responses.append(response)

    def queue_completion(self, content: str | dict[str, Any] | None, *, delay: float = 0.0,
                         headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        """Queue a 200 chat-completions answer (see :func:`chat_completion` for ``kwargs``)."""
        self.queue(FakeResponse(200, chat_completion(content, **kwargs), dict(headers or {}), delay))

    def queue_error(self, status: int, message: str = "fake error", *, headers: dict[str, str] | None = None,
                    delay: float = 0.0, code: str | None = None, param: str | None = None) -> None:
        """Queue an OpenAI-style error answer."""
        self.queue(FakeResponse(status, error_body(status, message, code=code, param=param), dict(headers or {}),
                                delay))

    def pending(self) -> int:
        """How many queued answers no request has taken yet."""
        with self._lock:
            return len(self._responses)

    def clear(self) -> int:
        """Drop the queued answers no request took; returns how many were dropped."""
        with self._lock:
            dropped = len(self._responses)
            self._responses.clear()
        return dropped

    # -- serving ---------------------------------------------------------------------------------

    def _next(self) -> FakeResponse:
        with self._lock:
            if self._responses:
                return self._responses.popleft()
        return FakeResponse(500, error_body(500, "no response queued"))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with fake._lock:
                    fake.requests.append(RecordedRequest(self.command, self.path,
                                                         {k.lower(): v for k, v in self.headers.items()}, body))
                response = fake._next()
                if response.delay:
                    time.sleep(response.delay)
                payload = (response.body if isinstance(response.body, str)
                           else json.dumps(response.body, ensure_ascii=False)).encode("utf-8")
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_POST = _serve
            do_GET = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
