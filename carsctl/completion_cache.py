"""Small cache files that the shell completion scripts read directly (no Python on TAB).

Written whenever carsctl loads the Celery app; cheap to call (writes only when content changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cars_bot.config import Settings


def task_alias(name: str) -> str:
    """`cars_bot.tasks.ai_tasks.process_post_task` -> `process-post`."""
    short = name.rsplit(".", 1)[-1]
    return short.removesuffix("_task").replace("_", "-")


def cache_dir(settings: Settings) -> Path:
    return settings.home / "completion"


def _write_if_changed(path: Path, lines: list[str]) -> None:
    content = "\n".join(lines) + "\n"
    try:
        if path.is_file() and path.read_text() == content:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(content)
        tmp.replace(path)
    except OSError:
        pass  # completion caches are best-effort


def remember_app(settings: Settings, app: Any) -> None:
    """Record the project's task aliases and names for completion."""
    names = sorted(n for n in app.tasks if n.startswith("cars_bot."))
    if not names:
        app.loader.import_default_modules()
        names = sorted(n for n in app.tasks if n.startswith("cars_bot."))
    _write_if_changed(cache_dir(settings) / "tasks", [task_alias(n) for n in names] + names)
