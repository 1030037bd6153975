"""What the OpenAI fallbacks recorded say: why a post was analysed by the rules, whether the account
is out of credit (and since when), how many posts the fallback analysed in the last hour.

A fallback is an ``ai_usage`` row of backend ``rules-fallback`` whose ``model`` holds the
:class:`~cars_bot.ai.failures.FallbackReason` (see :mod:`cars_bot.ai.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cars_bot.ai.failures import FallbackReason
from cars_bot.db.models import AIUsage, utcnow

__all__ = ["FALLBACK_BACKEND", "OpenAIHealth", "openai_health", "post_fallback_reason"]

FALLBACK_BACKEND = "rules-fallback"


@dataclass(frozen=True, slots=True)
class OpenAIHealth:
    """The fallbacks since OpenAI last answered, and in the last hour."""

    last_answer_at: datetime | None       # the newest request OpenAI answered
    failing_since: datetime | None        # the first fallback after that answer
    failing_reason: FallbackReason | None  # the newest fallback's reason after that answer
    fallbacks_last_hour: int

    def lines(self) -> list[str]:
        """One line each for `status` and `doctor`; none when OpenAI answers."""
        found = []
        if self.failing_reason is not None and self.failing_since is not None:
            since = self.failing_since.strftime("%Y-%m-%d %H:%M UTC")
            what = {FallbackReason.QUOTA_EXHAUSTED: "quota exhausted",
                    FallbackReason.MODEL_REJECTED: "the configured model (OPENAI_MODEL) is rejected",
                    }.get(self.failing_reason, f"failing ({self.failing_reason.text})")
            found.append(f"OpenAI: {what} since {since}")
        if self.fallbacks_last_hour:
            found.append(f"{self.fallbacks_last_hour} post(s) analysed by the fallback in the last hour")
        return found


def _reason(value: str | None) -> FallbackReason | None:
    try:
        return FallbackReason(value) if value else None
    except ValueError:
        return None


def openai_health(session: Session, now: datetime | None = None) -> OpenAIHealth:
    """Three small queries on ``ai_usage`` (indexed by id; the table holds one row per request)."""
    now = now or utcnow()
    last_answer = session.scalar(select(func.max(AIUsage.created_at)).where(AIUsage.backend == "openai"))
    after = [AIUsage.backend == FALLBACK_BACKEND]
    if last_answer is not None:
        after.append(AIUsage.created_at > last_answer)
    first = session.scalar(select(func.min(AIUsage.created_at)).where(*after))
    newest = session.scalar(select(AIUsage.model).where(*after).order_by(AIUsage.id.desc()).limit(1))
    hour = session.scalar(select(func.count(AIUsage.id)).where(
        AIUsage.backend == FALLBACK_BACKEND, AIUsage.created_at >= now - timedelta(hours=1))) or 0
    if first is not None and first.tzinfo is None:  # raw SQLite aggregates lose the column type
        from datetime import UTC

        first = datetime.fromisoformat(str(first)).replace(tzinfo=UTC)
    return OpenAIHealth(last_answer_at=last_answer, failing_since=first, failing_reason=_reason(newest),
                        fallbacks_last_hour=int(hour))


def post_fallback_reason(session: Session, post_id: int) -> FallbackReason | None:
    """Why the rules analysed this post instead of OpenAI (its newest fallback row), if they did."""
    value = session.scalar(select(AIUsage.model).where(AIUsage.post_id == post_id,
                                                       AIUsage.backend == FALLBACK_BACKEND)
                           .order_by(AIUsage.id.desc()).limit(1))
    return _reason(value)
