"""Values as plain JSON data: what a JSON column, a task's stored result or `--json` output can hold."""

from __future__ import annotations

import json
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as lists, dicts, strings, numbers, booleans and None; anything else (a datetime, a
    Decimal, an object) becomes its text, so storing or printing it can never fail on its type."""
    return json.loads(json.dumps(value, default=str))
