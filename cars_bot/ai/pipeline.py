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
service ads).

When OpenAI fails, one policy (:mod:`cars_bot.ai.failures`): a transient failure is raised to the
task, which Celery retries (honouring Retry-After) while the wait is reasonable (at most
:data:`MAX_DEFER` seconds) and retries remain (`may_defer`); the rules backend answers only after
that, or at once when waiting cannot help (quota exhausted, x-should-retry: false, model rejected).
A fallback is recorded on the post (``ai_backend`` = ``rules-fallback``) and as an ``ai_usage`` row
(backend ``rules-fallback``, ``model`` = the :class:`FallbackReason`, no tokens): ``post show`` says
why, ``status`` and ``doctor`` count them (:mod:`cars_bot.ai.fallbacks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cars_bot.ai.failures import FallbackReason, ModelRejected, OpenAIUnavailable
from cars_bot.ai.fallbacks import FALLBACK_BACKEND
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
#: The longest Retry-After worth waiting for through Celery; a longer one falls back to the rules. Each
#: retry claims the post again, so this stays below maintenance.STUCK_AFTER (15 min): a post waiting
#: for its retry is never taken for a stuck one.
MAX_DEFER = 600.0
CLAIMABLE = (PostStatus.NEW, PostStatus.FAILED)


class Backend(Protocol):
    name: str

    def analyse(self, text: str, *, may_defer: bool = False) -> tuple[Analysis, Usage | None]: ...


class RulesBackend:
    """The deterministic, offline backend (the embedded default)."""

    name = "rules"

    def analyse(self, text: str, *, may_defer: bool = False) -> tuple[Analysis, Usage | None]:
        from cars_bot.ai import rules

        return rules.analyse(text), None


class OpenAIPipelineBackend:
    """OpenAI with the rules backend in front (cheap rejections) and behind it (fallback, see above)."""

    name = "openai"

    def __init__(self, client: Any) -> None:
        self.client = client

    def analyse(self, text: str, *, may_defer: bool = False) -> tuple[Analysis, Usage | None]:
        """`may_defer`: the caller can retry later (a Celery task with retries left), so a transient
        failure worth waiting for is raised instead of answered by the rules."""
        from cars_bot.ai import rules

        verdict = rules.classify(text)
        if not verdict.is_sale and verdict.confidence >= RULES_REJECT_CONFIDENCE:
            return Analysis(classification=verdict, backend="rules"), None
        try:
            return self.client.analyse(text)
        except ModelRejected as error:
            return self._fallback(text, FallbackReason.MODEL_REJECTED, error)
        except OpenAIUnavailable as error:
            wait_ok = error.retry_after is None or error.retry_after <= MAX_DEFER
            if may_defer and error.retryable and wait_ok:
                raise
            return self._fallback(text, error.reason, error)
        except TransientError as error:
            if may_defer and (error.retry_after is None or error.retry_after <= MAX_DEFER):
                raise
            return self._fallback(text, FallbackReason.UNAVAILABLE, error)

    @staticmethod
    def _fallback(text: str, reason: FallbackReason, error: Exception) -> tuple[Analysis, Usage]:
        from cars_bot.ai import rules

        logger.warning("OpenAI did not answer (%s); the rules backend analyses the post: %s", reason, error)
        analysis = rules.analyse(text).model_copy(update={"backend": FALLBACK_BACKEND})
        return analysis, Usage(model=reason.value)


_backends: dict[tuple[Any, ...], Backend] = {}


def backend_for(settings: Any) -> Backend:
    """The process's backend: OpenAI when OPENAI_API_KEY is set, else the rules backend."""
    if not settings.openai_api_key:
        return RulesBackend()
    key = (settings.openai_api_key, settings.openai_model, settings.openai_base_url, settings.openai_timeout,
           settings.openai_prices)
    backend = _backends.get(key)
    if backend is None:
        from cars_bot.ai.openai_backend import OpenAIBackend
        from cars_bot.ai.prices import parse_prices

        client = OpenAIBackend(settings.openai_api_key, settings.openai_model,
                               base_url=settings.openai_base_url, timeout=settings.openai_timeout,
                               price_table=parse_prices(",".join(settings.openai_prices)))
        backend = _backends[key] = OpenAIPipelineBackend(client)
    return backend


@dataclass(frozen=True)
class Filters:
    """The admin's filters: confidence threshold, price range, excluded words."""

    min_confidence: float = 0.75
    min_price: int | None = None
    max_price: int | None = None
    excluded_words: tuple[str, ...] = ()
    duplicate_window_days: int = 0  # a repost of an ad published this recently is a duplicate; 0: off
    global_keywords: tuple[str, ...] = ()  # when set, a post must contain one of them
    manual_moderation: bool = False  # MODERATION=manual: a passing post waits for an admin (status pending)

    @classmethod
    def from_settings(cls, settings: Any) -> Filters:
        return cls(settings.min_confidence, settings.min_price, settings.max_price, settings.excluded_words,
                   duplicate_window_days=settings.duplicate_window_days, global_keywords=settings.global_keywords,
                   manual_moderation=settings.moderation == "manual")

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

    def lacks_keywords(self, text: str) -> bool:
        """True when global keywords are set and the text contains none of them."""
        lowered = text.casefold()
        return bool(self.global_keywords) and not any(word in lowered for word in self.global_keywords)

    def excluded_word(self, text: str) -> str | None:
        lowered = text.casefold()
        return next((word for word in self.excluded_words if word in lowered), None)


def analyse_cached(sessions: sessionmaker[Session], text: str, backend: Backend,
                   post_id: int | None = None, *, may_defer: bool = False) -> Analysis:
    """Analyse `text`, reusing a stored analysis of the same normalised text; records AI usage (and a
    fallback, as a row of backend ``rules-fallback`` whose ``model`` is the reason).

    No transaction is held while the backend works (a model call takes seconds; on SQLite an open
    write transaction would stall every other worker process).
    """
    digest = text_hash(text)
    with sessions() as session:
        cached = session.get(AnalysisCache, digest)
        if cached is not None and cached.backend == backend.name:
            return Analysis.model_validate(cached.result)
    analysis, usage = backend.analyse(text, may_defer=True) if may_defer else backend.analyse(text)
    with sessions.begin() as session:
        if usage is not None:
            row_backend = FALLBACK_BACKEND if analysis.backend == FALLBACK_BACKEND else backend.name
            session.add(AIUsage(post_id=post_id, backend=row_backend, model=usage.model,
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
                 filters: Filters, enqueue_publish: Callable[[int], Any], may_defer: bool = False) -> ProcessResult:
    """Run the whole pipeline for one stored post; returns what happened (never raises for bad input).

    `may_defer`: the caller retries later (see the module docstring); a TransientError then leaves
    the post claimed by `task_id`, and the retry of the same task claims it again."""
    if not claim_post(sessions, post_id, task_id):
        return _not_claimed(sessions, post_id, task_id, enqueue_publish)
    with sessions() as session:
        text = (session.scalar(select(Post.text).where(Post.id == post_id)) or "").strip()
    if not text:
        return _finish(sessions, post_id, PostStatus.REJECTED, "the post has no text")
    word = filters.excluded_word(text)
    if word:
        return _finish(sessions, post_id, PostStatus.REJECTED, f"contains the excluded word {word!r}")
    if filters.lacks_keywords(text):
        return _finish(sessions, post_id, PostStatus.REJECTED,
                       f"contains none of the keywords {', '.join(filters.global_keywords)}")
    try:
        analysis = analyse_cached(sessions, text, backend, post_id, may_defer=may_defer)
    except PermanentError as error:
        _finish(sessions, post_id, PostStatus.FAILED, f"AI backend: {error}")
        raise
    reason = filters.rejection(text, analysis)
    outcome = _finish(sessions, post_id, PostStatus.REJECTED if reason else PostStatus.READY, reason,
                      text=text, analysis=analysis, duplicate_window_days=filters.duplicate_window_days,
                      manual_moderation=filters.manual_moderation)
    if outcome.status != PostStatus.READY:  # rejected, a repost of an ad already published, or pending
        return outcome
    enqueue_publish(post_id)
    return replace(outcome, publish_enqueued=True)


def _finish(sessions: sessionmaker[Session], post_id: int, status: PostStatus, reason: str | None, *,
            text: str | None = None, analysis: Analysis | None = None,
            duplicate_window_days: int = 0, manual_moderation: bool = False) -> ProcessResult:
    """Record the outcome (and, with an analysis, the classification and car data) in one transaction.

    A post about to be `ready` that repeats an ad already published is recorded as `duplicate` instead
    (:mod:`cars_bot.duplicates`), in this same transaction so two copies cannot both pass; with manual
    moderation it is recorded as `pending` (the sheet's queue approves it: :mod:`cars_bot.sheets.queue_sync`)."""
    with sessions.begin() as session:
        post = session.get(Post, post_id)
        assert post is not None  # claimed by this task
        if analysis is not None and text is not None:
            post.text_hash = text_hash(text)
            post.is_sale = analysis.classification.is_sale
            post.confidence = analysis.classification.confidence
            post.ai_backend = analysis.backend
            if status == PostStatus.READY:
                from cars_bot.duplicates import find_original

                original = find_original(session, post, analysis.car, duplicate_window_days)
                if original is not None:
                    status, reason, post.duplicate_of = PostStatus.DUPLICATE, f"repost of post #{original}", original
                elif manual_moderation:
                    status, reason = PostStatus.PENDING, "waiting for an admin in the sheet (MODERATION=manual)"
            if status in (PostStatus.READY, PostStatus.DUPLICATE, PostStatus.PENDING):
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
