"""Small cache files that the shell completion scripts read directly (no Python on TAB).

`$CARSCTL_HOME/completion/tasks` holds the project's task aliases, then their full names, one a line.
It is written whenever carsctl loads the Celery app (`remember_app`, cheap: it writes only when the
content changed) and by `carsctl completion refresh` (`refresh_caches`), which the completion scripts
call once when the file is missing. Neither imports Celery for the task list when the app has not
registered the tasks yet: the names are read from the task modules' source with a regex, so the
fallback costs milliseconds and never touches the network.

Node names need no cache: the scripts list `$CARSCTL_HOME/nodes/*.json` themselves. Queue names are
static (`cars_bot.config.QUEUES`) and baked into the generated scripts.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cars_bot.task_names import TASK_PREFIX, task_alias

if TYPE_CHECKING:
    from cars_bot.config import Settings

#: `name="cars_bot.tasks.<module>.<task>"` in a task decorator.
_TASK_NAME = re.compile(r"""\bname\s*=\s*["'](cars_bot\.tasks\.[A-Za-z_][\w.]*)["']""")


def cache_dir(settings: Settings) -> Path:
    """The directory of the completion caches: `$CARSCTL_HOME/completion`."""
    return settings.home / "completion"


def tasks_file(settings: Settings) -> Path:
    """The task cache read by the completion scripts."""
    return cache_dir(settings) / "tasks"


def task_lines(names: Iterable[str]) -> list[str]:
    """The cache's lines: every alias (sorted, unique), then every full name (sorted, unique)."""
    full = sorted(set(names))
    return sorted({task_alias(name) for name in full}) + full


def task_modules_dir() -> Path | None:
    """The `cars_bot/tasks` package directory, found without importing it (or Celery)."""
    spec = importlib.util.find_spec("cars_bot")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "tasks"
        if candidate.is_dir():
            return candidate
    return None


def static_task_names(directory: Path | None = None) -> list[str]:
    """Task names declared in the task modules' source (`name="cars_bot.tasks...."`), sorted.

    A static table derived from the source: no import, so no Celery, no API clients, no network.
    """
    directory = task_modules_dir() if directory is None else directory
    if directory is None:
        return []
    names: set[str] = set()
    for path in sorted(directory.glob("*.py")):
        try:
            names.update(_TASK_NAME.findall(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return sorted(names)


def _write_if_changed(path: Path, lines: list[str]) -> bool:
    """Replace `path` atomically with `lines` unless it already holds them; True when written."""
    content = "\n".join(lines) + "\n" if lines else ""
    try:
        if path.is_file() and path.read_text() == content:
            return False
        from cars_bot.private_files import private_dir

        private_dir(path.parent)  # under CARSCTL_HOME: creating it here makes it 0700 too
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        tmp.replace(path)
    except OSError:
        return False  # completion caches are best-effort
    return True


def remember_app(settings: Settings, app: Any) -> None:
    """Record the project's task aliases and names for completion.

    Uses the tasks the app has registered plus those declared in the task modules' source; it does
    not import the task modules (that would load the API clients on every command).
    """
    try:
        registered = [name for name in app.tasks if name.startswith(TASK_PREFIX)]
    except Exception:  # noqa: BLE001 - a cache must never break the command that loads the app
        registered = []
    _write_if_changed(tasks_file(settings), task_lines([*registered, *static_task_names()]))


@dataclass(frozen=True, slots=True)
class CacheRefresh:
    """What `refresh_caches` wrote: the task cache's path, its counts, whether its content changed."""

    tasks_file: str
    tasks: int  # full task names
    aliases: int
    changed: bool  # False when the file already held these lines (or could not be written)
    written: bool  # the file exists now


def refresh_caches(settings: Settings) -> CacheRefresh:
    """Rewrite the completion caches from the source alone (no Celery import, no network).

    Returns what was written, for `carsctl completion refresh`.
    """
    names = static_task_names()
    path = tasks_file(settings)
    lines = task_lines(names)
    changed = _write_if_changed(path, lines)
    return CacheRefresh(tasks_file=str(path), tasks=len(names), aliases=len(lines) - len(names), changed=changed,
                        written=path.is_file())
