"""The project's tasks by name: a task is named by its alias (`process-post`), its function name or
its full name; an unknown name is rejected with the closest matches. The catalog shows each task's
queue, priority, limits and periodic schedule as `apply_async` and beat would resolve them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cars_bot.broker import describe_schedule, task_route
from cars_bot.task_names import task_alias
from carsctl.dispatch.arguments import param_text, task_signature
from carsctl.errors import UsageError

if TYPE_CHECKING:
    from celery import Celery, Task


def load_tasks(app: Celery) -> dict[str, Task]:
    """The project's registered tasks by full name (imports the task modules)."""
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def resolve_task(app: Celery, name: str) -> Task:
    """The task named by alias, function name or full name; UsageError with the closest matches."""
    from difflib import get_close_matches

    tasks = load_tasks(app)
    if name in tasks:
        return tasks[name]
    by_alias = {task_alias(full): full for full in tasks}
    by_alias.update({full.rsplit(".", 1)[-1]: full for full in tasks})
    wanted = name.replace("_", "-") if name.replace("_", "-") in by_alias else name
    if wanted in by_alias:
        return tasks[by_alias[wanted]]
    close = get_close_matches(name, [task_alias(full) for full in tasks] + list(tasks), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "list them with `carsctl task list`"
    raise UsageError(f"unknown task {name!r}", hint=hint)


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One task as `apply_async` and beat would treat it: queue, default priority, limits, schedule."""

    alias: str
    name: str
    signature: str
    queue: str | None
    priority: int | None
    soft_time_limit: float | None
    time_limit: float | None
    max_retries: int | None
    acks_late: bool
    periodic: list[str]


def task_catalog(app: Celery) -> list[CatalogRow]:
    """Every project task: alias, name, queue, default priority, limits, retries, periodic schedule."""
    periodic: dict[str, list[str]] = {}
    for spec in (app.conf.beat_schedule or {}).values():
        periodic.setdefault(spec["task"], []).append(describe_schedule(spec["schedule"]))
    rows = []
    for name, task in sorted(load_tasks(app).items()):
        route = task_route(app, task, {})
        queue = route.get("queue")
        rows.append(CatalogRow(
            alias=task_alias(name), name=name,
            signature=f"({', '.join(param_text(p) for p in task_signature(task).parameters.values())})",
            queue=getattr(queue, "name", queue), priority=route.get("priority"),
            soft_time_limit=task.soft_time_limit or app.conf.task_soft_time_limit,
            time_limit=task.time_limit or app.conf.task_time_limit,
            max_retries=task.max_retries, acks_late=bool(task.acks_late), periodic=periodic.get(name, []),
        ))
    return rows
