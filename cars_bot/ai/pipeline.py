"""The post pipeline: claim a stored post, analyse it (classify -> extract -> generate), apply the
filters, store the result, and hand the post to publishing. Plain functions, testable without a worker.

Idempotency (prior-system defects 2, 3, 5):
- A post is claimed by ONE conditional UPDATE (new|failed -> processing, remembering the claiming task
  id). A duplicate enqueue of the same post (another task id) finds it claimed and stops; a redelivered
  or retried message (same task id, e.g. after a worker crash) may resume its own claim and finish.
- Car data is upserted (one row per post), so a resumed run never fails on the unique constraint.
- Only the run that moved the post to `ready` enqueues publishing, so duplicates enqueue at most once;
  publishing is itself exactly-once, so the re-enqueue after a crash between commit and enqueue is safe.

Cost (OpenAI backend): one request per sale ad for classification + extraction + generation together,
zero for a text already analysed (cache by normalised text hash: a repost in three channels costs one
request), zero for posts that the rules backend rejects with high confidence (news, buyer requests,
service ads). When OpenAI stays unreachable after its own retries, the rules backend answers instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.ai.schemas import Analysis, Usage
from cars_bot.ai.text import text_hash
from cars_bot.db.models import (
    AIUsage,
    AnalysisCache,
    AutotekaStatus,
    CarData,
    Fuel,
    Post,
    PostStatus,
    Transmission,
    utcnow,
)
from cars_bot.errors import PermanentError, TransientError

logger = logging.getLogger("cars_bot.ai.pipeline")

#: Rules verdicts this sure that a post is NOT a sale skip the paid backend.
RULES_REJECT_CONFIDENCE = 0.9
CLAIMABLE = (PostStatus.NEW, PostStatus.FAILED)


class Backend(Protocol):
    name: str

    def analyse(self, text: str) -> tuple[Analysis, Usage | None]: ...


class RulesBackend:
    """The deterministic, offline backend (the embedded default)."""

    name = "rules"

    def analyse(self, text: str) -> tuple[Analysis, Usage | None]:
        from cars_bot.ai import rules

        return rules.analyse(text), None


class OpenAIPipelineBackend:
    """OpenAI with the rules backend in front (cheap rejections) and behind it (fallback)."""

    name = "openai"

    def __init__(self, client: Any) -> None:
        self.client = client

    def analyse(self, text: str) -> tuple[Analysis, Usage | None]:
        from cars_bot.ai import rules

        verdict = rules.classify(text)
        if not verdict.is_sale and verdict.confidence >= RULES_REJECT_CONFIDENCE:
            return Analysis(classification=verdict, backend="rules"), None
        try:
            return self.client.analyse(text)
        except TransientError as error:
            logger.warning("OpenAI unavailable (%s); falling back to the rules backend", error)
            analysis = rules.analyse(text)
            return analysis.model_copy(update={"backend": "rules-fallback"}), None


_backends: dict[tuple[Any, ...], Backend] = {}


def backend_for(settings: Any) -> Backend:
    """The process's backend: OpenAI when OPENAI_API_KEY is set, else the rules backend."""
    if not settings.openai_api_key:
        return RulesBackend()
    key = (settings.openai_api_key, settings.openai_model, settings.openai_base_url, settings.openai_timeout)
    backend = _backends.get(key)
    if backend is None:
        from cars_bot.ai.openai_backend import OpenAIBackend

        client = OpenAIBackend(settings.openai_api_key, settings.openai_model,
                               base_url=settings.openai_base_url, timeout=settings.openai_timeout)
        backend = _backends[key] = OpenAIPipelineBackend(client)
    return backend


@dataclass(frozen=True)
class Filters:
    """The admin's filters: confidence threshold, price range, excluded words."""

    min_confidence: float = 0.75
    min_price: int | None = None
    max_price: int | None = None
    excluded_words: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> Filters:
        return cls(settings.min_confidence, settings.min_price, settings.max_price, settings.excluded_words)

    def rejection(self, text: str, analysis: Analysis) -> str | None:
        """Why the post is rejected, or None when it passes."""
        verdict = analysis.classification
        if not verdict.is_sale:
            return f"not a sale ad: {verdict.reason}".strip()
        if verdict.confidence < self.min_confidence:
            return f"confidence {verdict.confidence:.2f} below the threshold {self.min_confidence:.2f}"
        price = analysis.car.price if analysis.car else None
        if price is not None and self.min_price is not None and price < self.min_price:
            return f"price {price} below the minimum {self.min_price}"
        if price is not None and self.max_price is not None and price > self.max_price:
            return f"price {price} above the maximum {self.max_price}"
        return None

    def excluded_word(self, text: str) -> str | None:
        lowered = text.casefold()
        return next((word for word in self.excluded_words if word in lowered), None)


def analyse_cached(sessions: sessionmaker[Session], text: str, backend: Backend,
                   post_id: int | None = None) -> Analysis:
    """Analyse `text`, reusing a stored analysis of the same normalised text; records AI usage.

    No transaction is held while the backend works (a model call takes seconds; on SQLite an open
    write transaction would stall every other worker process).
    """
    digest = text_hash(text)
    with sessions() as session:
        cached = session.get(AnalysisCache, digest)
        if cached is not None and cached.backend == backend.name:
            return Analysis.model_validate(cached.result)
    analysis, usage = backend.analyse(text)
    with sessions.begin() as session:
        if usage is not None:
            session.add(AIUsage(post_id=post_id, backend=backend.name, model=usage.model,
                                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                total_tokens=usage.total_tokens, cost_usd=usage.cost_usd or 0.0,
                                text_hash=digest))
        if analysis.backend == backend.name:  # a fallback answer is not worth caching
            _store_cache(session, digest, backend.name, analysis)
    return analysis


def _store_cache(session: Session, digest: str, backend: str, analysis: Analysis) -> None:
    try:
        with session.begin_nested():
            existing = session.get(AnalysisCache, digest)
            if existing is None:
                session.add(AnalysisCache(text_hash=digest, backend=backend, result=analysis.model_dump()))
            else:
                existing.backend, existing.result = backend, analysis.model_dump()
    except IntegrityError:
        pass  # another process cached the same text at the same moment


def claim_post(sessions: sessionmaker[Session], post_id: int, task_id: str) -> bool:
    """Atomically move the post to `processing` for `task_id` (see the module docstring)."""
    with sessions.begin() as session:
        result = session.execute(
            update(Post)
            .where(Post.id == post_id,
                   or_(Post.status.in_(CLAIMABLE),
                       and_(Post.status == PostStatus.PROCESSING, Post.claimed_by == task_id)))
            .values(status=PostStatus.PROCESSING, claimed_by=task_id, attempts=Post.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def fail_claimed(sessions: sessionmaker[Session], post_id: int, task_id: str, reason: str) -> bool:
    """Mark the post `failed` with `reason` if `task_id` still holds its processing claim (a run cut
    short: the soft time limit). Its half-done work was rolled back with its transaction; `failed` is
    final, shown with its reason, and claimable again by `carsctl task retry`. True if it was marked."""
    with sessions.begin() as session:
        result = session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == PostStatus.PROCESSING, Post.claimed_by == task_id)
            .values(status=PostStatus.FAILED, status_reason=reason, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What one pipeline run did to a post: its status after the run, and whether publishing was enqueued."""

    post_id: int
    status: PostStatus | Literal["missing"]  # "missing": no such post
    reason: str | None = None  # why rejected or failed; "already handled" when another run owns the post
    is_sale: bool | None = None
    confidence: float | None = None
    backend: str | None = None  # the backend whose analysis was stored
    publish_enqueued: bool = False


def process_post(post_id: int, *, task_id: str, sessions: sessionmaker[Session], backend: Backend,
                 filters: Filters, enqueue_publish: Callable[[int], Any]) -> ProcessResult:
    """Run the whole pipeline for one stored post; returns what happened (never raises for bad input)."""
    if not claim_post(sessions, post_id, task_id):
        return _not_claimed(sessions, post_id, task_id, enqueue_publish)
    with sessions() as session:
        text = (session.scalar(select(Post.text).where(Post.id == post_id)) or "").strip()
    if not text:
        return _finish(sessions, post_id, PostStatus.REJECTED, "the post has no text")
    word = filters.excluded_word(text)
    if word:
        return _finish(sessions, post_id, PostStatus.REJECTED, f"contains the excluded word {word!r}")
    try:
        analysis = analyse_cached(sessions, text, backend, post_id)
    except PermanentError as error:
        _finish(sessions, post_id, PostStatus.FAILED, f"AI backend: {error}")
        raise
    reason = filters.rejection(text, analysis)
    outcome = _finish(sessions, post_id, PostStatus.REJECTED if reason else PostStatus.READY, reason,
                      text=text, analysis=analysis)
    if reason:
        return outcome
    enqueue_publish(post_id)
    return replace(outcome, publish_enqueued=True)


def _finish(sessions: sessionmaker[Session], post_id: int, status: PostStatus, reason: str | None, *,
            text: str | None = None, analysis: Analysis | None = None) -> ProcessResult:
    """Record the outcome (and, with an analysis, the classification and car data) in one transaction."""
    with sessions.begin() as session:
        post = session.get(Post, post_id)
        assert post is not None  # claimed by this task
        if analysis is not None and text is not None:
            post.text_hash = text_hash(text)
            post.is_sale = analysis.classification.is_sale
            post.confidence = analysis.classification.confidence
            post.ai_backend = analysis.backend
            if status == PostStatus.READY:
                _upsert_car(session, post, analysis)
                post.summary = analysis.summary
        post.status = status
        post.status_reason = reason
        post.processed_at = utcnow()
        return ProcessResult(post_id=post.id, status=status, reason=reason, is_sale=post.is_sale,
                             confidence=post.confidence, backend=post.ai_backend)


def _not_claimed(sessions: sessionmaker[Session], post_id: int, task_id: str,
                 enqueue_publish: Callable[[int], Any]) -> ProcessResult:
    with sessions() as session:
        post = session.get(Post, post_id)
        if post is None:
            return ProcessResult(post_id=post_id, status="missing", reason="no such post")
        status = post.status
        # The same message redelivered after a crash between the commit and the enqueue.
        redelivered = status == PostStatus.READY and post.claimed_by == task_id
    if redelivered:
        enqueue_publish(post_id)
    return ProcessResult(post_id=post_id, status=status, reason="already handled", publish_enqueued=redelivered)


CAR_FIELDS = ("brand", "model", "year", "price", "mileage", "engine_volume", "transmission", "fuel", "owners",
              "city", "equipment", "condition", "autoteka_status", "market_price", "price_justification")


ENUM_FIELDS: dict[str, type] = {"transmission": Transmission, "fuel": Fuel, "autoteka_status": AutotekaStatus}


def _upsert_car(session: Session, post: Post, analysis: Analysis) -> None:
    values = analysis.car.model_dump() if analysis.car else {}
    values["autoteka_status"] = values.get("autoteka_status") or "unknown"
    row = session.scalar(select(CarData).where(CarData.post_id == post.id))
    if row is None:
        row = CarData(post_id=post.id)
        session.add(row)
    for name in CAR_FIELDS:
        value = values.get(name)
        if name in ENUM_FIELDS and value is not None:
            value = ENUM_FIELDS[name](value)  # the schema already mapped unknown values to None
        setattr(row, name, value)
