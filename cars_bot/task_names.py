"""Names of the project's tasks, without importing Celery or the task modules.

An alias is the short name operators type (`process-post` for
`cars_bot.tasks.ai_tasks.process_post_task`); carsctl accepts it everywhere a task is named, and the
completion scripts offer it.
"""

from __future__ import annotations

#: The prefix of the project's own task names (Celery's built-in tasks are left out).
TASK_PREFIX = "cars_bot."
#: Tasks that other tasks and carsctl send by name (no import of the sending side's module).
PROCESS_POST = "cars_bot.tasks.ai_tasks.process_post_task"
PUBLISH_POST = "cars_bot.tasks.publishing_tasks.publish_post_task"
SYNC_SUBSCRIBERS = "cars_bot.tasks.sheets_tasks.sync_subscribers_task"


def task_alias(name: str) -> str:
    """`cars_bot.tasks.ai_tasks.process_post_task` -> `process-post`."""
    short = name.rsplit(".", 1)[-1]
    return short.removesuffix("_task").replace("_", "-")
