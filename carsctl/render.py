"""Tables and JSON. Never talks to Celery, Redis or the database: it only formats plain data.

User-supplied strings (post text, task arguments) are escaped before Rich sees them, so
`[bold]` in a post is shown, not interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any


def dump_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def safe(value: Any) -> str:
    """A value as plain text for Rich: markup escaped, None as an empty string."""
    from rich.markup import escape

    if value is None:
        return ""
    return escape(value if isinstance(value, str) else str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Any:
    """A Rich table with every cell escaped."""
    from rich.table import Table

    result = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(safe(cell) for cell in row))
    return result


def key_values(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Any:
    """A two-column table of names and values."""
    return table(title, ("", ""), ((name, value) for name, value in pairs))


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'12s ago', '3m ago', '5h ago', 'in 2m' (empty for None)."""
    if moment is None:
        return ""
    from datetime import UTC

    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"
