"""AI tasks (queue `ai_processing`): the whole pipeline for a stored post, and its three single steps.

Thin wrappers: the work is in :mod:`cars_bot.ai.pipeline` and the backends of :mod:`cars_bot.ai`.

Time limits: one OpenAI analysis takes at most ``worst_case_seconds`` (every attempt timing out, the
longest waits between them: 150 s with OPENAI_TIMEOUT=30 and 3 attempts), so every task that analyses
has a soft limit of at least :data:`ANALYSE_SOFT_LIMIT`; ``tests/cars_bot/test_pipeline_openai.py``
checks that the defaults fit.
"""

from __future__ import annotations

import json
from typing import Any

from cars_bot.celery_app import app
from cars_bot.task_names import PUBLISH_POST
from cars_bot.tasks.base import CarsTask, task_result

#: Seconds: above the worst case of one OpenAI analysis with the default settings (150 s).
ANALYSE_SOFT_LIMIT = 180


def _backend() -> Any:
    from cars_bot.ai.pipeline import backend_for
    from cars_bot.config import get_settings

    return backend_for(get_settings())


def _may_defer(task: CarsTask) -> bool:
    """Retries are left: a transient OpenAI failure is retried by Celery; the last try falls back to
    the rules (see cars_bot.ai.pipeline)."""
    return task.request.retries < task.max_retries


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.ai_tasks.process_post_task",
          soft_time_limit=300, time_limit=360)
def process_post_task(self: CarsTask, post_id: int) -> dict[str, Any]:
    """Classify -> extract -> generate -> store one post, then enqueue its publication.

    Cut short by the soft time limit, the run releases its claim: the post is marked failed with the
    reason (nothing half-written: each step is one transaction) and the task lands in the registry.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from cars_bot.ai.pipeline import Filters, fail_claimed, process_post
    from cars_bot.config import get_settings
    from cars_bot.db.session import session_factory
    from cars_bot.sheets.filter_sync import settings_with_sheet_filters

    task_id = self.request.id or f"direct-{post_id}"
    sessions = session_factory()
    with sessions() as session:  # the sheet "Настройки фильтров" overrides the environment's filters
        settings = settings_with_sheet_filters(get_settings(), session)
    try:
        return task_result(process_post(
            post_id, task_id=task_id, sessions=sessions,
            backend=_backend(), filters=Filters.from_settings(settings),
            enqueue_publish=lambda pid: self.app.send_task(PUBLISH_POST, args=[pid]),
            may_defer=_may_defer(self),
        ))
    except SoftTimeLimitExceeded:
        limit = self.request.timelimit[1] if self.request.timelimit and self.request.timelimit[1] else \
            self.soft_time_limit
        fail_claimed(sessions, post_id, task_id, f"processing took longer than its soft time limit ({limit}s)")
        raise


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.ai_tasks.classify_post_task",
          soft_time_limit=ANALYSE_SOFT_LIMIT, time_limit=ANALYSE_SOFT_LIMIT + 30)
def classify_post_task(self: CarsTask, text: str) -> dict[str, Any]:
    """Is this text a car-sale ad? {is_sale, confidence, reason}."""
    analysis, _usage = _backend().analyse(text, may_defer=_may_defer(self))
    return analysis.classification.model_dump()


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.ai_tasks.extract_data_task",
          soft_time_limit=ANALYSE_SOFT_LIMIT, time_limit=ANALYSE_SOFT_LIMIT + 30)
def extract_data_task(self: CarsTask, text: str) -> dict[str, Any]:
    """The car's structured data from an ad's text (fields without a value are left out)."""
    from cars_bot.ai import rules

    analysis, _usage = _backend().analyse(text, may_defer=_may_defer(self))
    car = analysis.car if analysis.car is not None else rules.extract(text)
    return car.model_dump(exclude_none=True)


@app.task(bind=True, base=CarsTask, name="cars_bot.tasks.ai_tasks.generate_description_task",
          soft_time_limit=ANALYSE_SOFT_LIMIT, time_limit=ANALYSE_SOFT_LIMIT + 30)
def generate_description_task(self: CarsTask, original_text: str, car_data_json: str | None = None) -> dict[str, Any]:
    """A short factual summary of the equipment and condition (invents nothing)."""
    from cars_bot.ai import rules
    from cars_bot.ai.schemas import CarData

    analysis, _usage = _backend().analyse(original_text, may_defer=_may_defer(self))
    if analysis.summary:
        return {"summary": analysis.summary, "backend": analysis.backend}
    car = CarData.model_validate(json.loads(car_data_json)) if car_data_json else rules.extract(original_text)
    return {"summary": rules.summarize(original_text, car), "backend": "rules"}
