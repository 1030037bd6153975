"""The embedded workbook: a JSON file standing in for the Google spreadsheet when Google is not configured.

The file (default ``$CARSCTL_HOME/workbook.json``) is made to be edited by hand::

    {
      "_about": "...",
      "Каналы для мониторинга": {
        "headers": ["ID", "Username канала", "Название канала", ...],
        "rows": [
          {"Username канала": "@cars_msk", "Номер": "+7 999 123-45-67", "Активен": "TRUE"}
        ]
      },
      ...
    }

A row is an object keyed by header (missing keys are blank cells; ``true``/numbers are accepted and
read as ``"TRUE"``/text) or a list of cells in header order. Row numbers follow the spreadsheet: the
first element of ``rows`` is row 2. Keys starting with ``_`` are not worksheets.

Concurrency: every read-modify-write holds an exclusive ``fcntl`` lock on ``<file>.lock`` (a separate
file, because the data file is replaced on each write) and the new content is written to a temporary
file in the same directory, fsynced and renamed over the old one, so a reader never sees half a file
and two worker processes never lose each other's writes. Updates are queued and written in one
rewrite by :meth:`LocalWorkbook.flush`.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cars_bot.errors import PermanentError
from cars_bot.sheets.workbook import (
    LAYOUT,
    CellValue,
    Row,
    canonical_headers,
    cell_text,
    header_key,
    layout_headers,
)

ABOUT = (
    "Local stand-in for the Google admin spreadsheet (used while GOOGLE_CREDENTIALS_FILE / "
    "GOOGLE_SPREADSHEET_ID are not set). Each worksheet has 'headers' and 'rows'; a row is an object "
    "keyed by header. Add channels or subscribers by adding rows; the first row is sheet row 2."
)


class LocalWorkbook:
    """A :class:`~cars_bot.sheets.workbook.Workbook` kept in a JSON file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._pending: dict[str, dict[int, dict[str, str]]] = {}
        #: How many times this object rewrote the file (tests and diagnostics).
        self.writes = 0

    def __repr__(self) -> str:
        return f"LocalWorkbook({str(self.path)!r})"

    # Workbook interface ------------------------------------------------------------------------
    def read(self, sheet: str) -> list[Row]:
        """Every non-blank data row of `sheet`; creates the file with all headers on first use."""
        if not self.path.exists():
            with self._transaction():
                pass
        with self._locked(exclusive=False):
            data = self._load()
        table = data.get(sheet)
        if table is None:
            return []
        return [row for row in _rows(sheet, table) if any(v.strip() for v in row.values())]

    def update(self, sheet: str, row_number: int, values: Mapping[str, CellValue]) -> None:
        """Queue `values` for row `row_number` (2 or more); written by :meth:`flush`."""
        if row_number < 2:
            raise ValueError(f"row {row_number}: data rows start at 2 (row 1 holds the headers)")
        cells = self._pending.setdefault(sheet, {}).setdefault(row_number, {})
        cells.update({header: cell_text(value) for header, value in values.items()})

    def flush(self) -> int:
        """Write every queued update in one locked rewrite of the file; returns the cells written."""
        if not self._pending:
            return 0
        written = 0
        with self._transaction() as txn:
            data = txn.data
            for sheet, rows in self._pending.items():
                table = data.get(sheet)
                if table is None:
                    raise PermanentError(f"worksheet {sheet!r} not found in {self.path}")
                headers = table["headers"]
                by_key = {header_key(h): h for h in headers}
                for row_number, cells in rows.items():
                    unknown = [h for h in cells if header_key(h) not in by_key]
                    if unknown:
                        raise PermanentError(f"worksheet {sheet!r} has no column {unknown[0]!r} ({self.path})")
                    while len(table["rows"]) < row_number - 1:
                        table["rows"].append({})
                    current = _row_dict(sheet, headers, table["rows"][row_number - 2])
                    for header, value in cells.items():
                        current[by_key[header_key(header)]] = value
                        written += 1
                    table["rows"][row_number - 2] = _ordered(headers, current)
            txn.changed = True
        self._pending.clear()
        return written

    def append(self, sheet: str, rows: Sequence[Mapping[str, CellValue]], *, unique_by: str | None = None) -> int:
        """Append `rows` in one locked rewrite, skipping `unique_by` duplicates; returns how many."""
        self.flush()
        if not rows:
            return 0
        with self._transaction() as txn:
            table = txn.data.get(sheet)
            if table is None:
                table = txn.data[sheet] = {"headers": list(layout_headers(sheet)), "rows": []}
            headers = table["headers"]
            seen: set[str] = set()
            if unique_by is not None:
                seen = {row.cell(unique_by) for row in _rows(sheet, table)} - {""}
            added = []
            for values in rows:
                cells = {h: cell_text(v) for h, v in values.items()}
                if unique_by is not None:
                    key = cells.get(unique_by, "").strip()
                    if key and key in seen:
                        continue
                    seen.add(key)
                added.append(_ordered(headers, _row_dict(sheet, headers, cells)))
            if added:
                table["rows"].extend(added)
                txn.changed = True
        return len(added)

    def worksheets(self) -> list[str]:
        """The worksheets in the file ([] while the file does not exist)."""
        if not self.path.exists():
            return []
        with self._locked(exclusive=False):
            return [name for name in self._load() if not name.startswith("_")]

    def ensure_sheet(self, sheet: str) -> bool:
        """Create `sheet` with its headers if missing, or add the layout headers it lacks."""
        wanted = layout_headers(sheet)
        with self._transaction() as txn:
            table = txn.data.get(sheet)
            if table is None:
                txn.data[sheet] = {"headers": list(wanted), "rows": []}
                txn.changed = True
            else:
                have = {header_key(h) for h in table["headers"]}
                missing = [h for h in wanted if header_key(h) not in have]
                if missing:
                    table["headers"].extend(missing)
                    txn.changed = True
        return txn.changed

    # file handling -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        """Lock, load (or start a new workbook), let the caller change it, save atomically.

        The file is rewritten only when the caller set ``changed`` (or when it did not exist yet).
        """
        with self._locked(exclusive=True):
            exists = self.path.exists()
            txn = _Transaction(self._load() if exists else _new_workbook())
            yield txn
            if txn.changed or not exists:
                self._save(txn.data)

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _new_workbook()
        except json.JSONDecodeError as exc:
            raise PermanentError(
                f"local workbook {self.path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
                "fix it or delete it to start a new one"
            ) from None
        except UnicodeDecodeError:
            raise PermanentError(f"local workbook {self.path} is not UTF-8 text") from None
        if not isinstance(raw, dict):
            raise PermanentError(f"local workbook {self.path} must hold a JSON object of worksheets")
        data: dict[str, Any] = {}
        for name, table in raw.items():
            if name.startswith("_"):
                data[name] = table
                continue
            if isinstance(table, list):  # a bare list of rows: the layout's headers
                table = {"headers": list(LAYOUT.get(name, ())), "rows": table}
            if not isinstance(table, dict) or not isinstance(table.get("rows", []), list):
                raise PermanentError(f"local workbook {self.path}: worksheet {name!r} must have a 'rows' list")
            headers = table.get("headers") or list(LAYOUT.get(name, ()))
            data[name] = {"headers": canonical_headers(name, [cell_text(h) for h in headers]),
                          "rows": list(table.get("rows", []))}
        return data

    def _save(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1


class _Transaction:
    """The loaded workbook inside a locked read-modify-write, and whether it was changed."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.changed = False


def _new_workbook() -> dict[str, Any]:
    data: dict[str, Any] = {"_about": ABOUT}
    for sheet, headers in LAYOUT.items():
        data[sheet] = {"headers": list(headers), "rows": []}
    return data


def _row_dict(sheet: str, headers: list[str], raw: Any) -> dict[str, str]:
    """A stored row (object or list of cells) as header -> text, with the layout's header spelling."""
    if isinstance(raw, list):
        return {h: cell_text(v) for h, v in zip(headers, raw, strict=False)}
    if not isinstance(raw, dict):
        return {}
    keys = canonical_headers(sheet, [str(k) for k in raw])
    by_key = {header_key(h): h for h in headers}
    row: dict[str, str] = {}
    for key, value in zip(keys, raw.values(), strict=True):
        row.setdefault(by_key.get(header_key(key), key), cell_text(value))
    return row


def _ordered(headers: list[str], row: dict[str, str]) -> dict[str, str]:
    """The row's cells in header order (extra keys last), blank cells left out to keep the file short."""
    ordered = {h: row[h] for h in headers if row.get(h)}
    ordered.update({k: v for k, v in row.items() if k not in ordered and v})
    return ordered


def _rows(sheet: str, table: dict[str, Any]) -> list[Row]:
    headers = table["headers"]
    rows = []
    for index, raw in enumerate(table["rows"]):
        cells = _row_dict(sheet, headers, raw)
        rows.append(Row(index + 2, {h: cells.get(h, "") for h in headers} | cells))
    return rows
