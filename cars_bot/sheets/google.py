"""The Google Sheets workbook: the admin spreadsheet through the real gspread client.

Request budget (fixes prior-system.md section 10, defect 15): a :class:`GoogleWorkbook` is built per
task run and costs one metadata request, one ``values.get`` per worksheet it reads (whole sheet, never
a search per row), one ``values.batchUpdate`` per :meth:`~GoogleWorkbook.flush` and one
``values.append`` (plus a fresh read, to stay idempotent) per :meth:`~GoogleWorkbook.append`. The
gspread client (and its authorised HTTP session and token) is built once per process.

Values are read unformatted (``UNFORMATTED_VALUE``): booleans arrive as booleans whatever the sheet's
locale ("TRUE", never "ИСТИНА"), numbers without thousands separators or decimal commas, and dates as
serial numbers that are turned into ``YYYY-mm-dd HH:MM:SS`` text for the layout's date columns.
Writes use ``USER_ENTERED`` so dates and booleans become typed cells; a text value that would be
read as a formula (``=...``, ``+...``) is written as text.

Errors: HTTP 429, quota errors and 5xx become :class:`~cars_bot.errors.TransientError` with the
``Retry-After`` delay (60 s when Google gives none); 403/404 and other refusals become
:class:`~cars_bot.errors.PermanentError` with what to fix; a missing credentials file is
:class:`~cars_bot.errors.NotConfigured`; network failures are transient.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cars_bot.errors import CarsBotError, NotConfigured, PermanentError, TransientError
from cars_bot.retry_after import retry_after_seconds
from cars_bot.secret_masking import mask
from cars_bot.sheets.workbook import (
    DATE_COLUMNS,
    CellValue,
    Row,
    canonical_headers,
    cell_text,
    header_key,
    layout_headers,
    serial_to_text,
)

logger = logging.getLogger("cars_bot.sheets")

#: Only the Sheets API is used (the spreadsheet is opened by id, so Drive access is not needed).
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
#: (connect, read) seconds per request: well inside the tasks' soft time limits.
REQUEST_TIMEOUT = (10.0, 20.0)
#: Delay asked of the task layer when Google rate-limits without a Retry-After header.
DEFAULT_RETRY_AFTER = 60.0
READ_PARAMS = {
    "valueRenderOption": "UNFORMATTED_VALUE",
    "dateTimeRenderOption": "SERIAL_NUMBER",
    "majorDimension": "ROWS",
}
WRITE_OPTION = "USER_ENTERED"
NEW_SHEET_ROWS = 1000
QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"})

T = TypeVar("T")

_clients: dict[tuple[str, int], Any] = {}
_clients_lock = threading.Lock()


def _credentials_path(credentials_file: Path | str | None) -> Path:
    if not credentials_file:
        raise NotConfigured("Google Sheets is not configured: set GOOGLE_CREDENTIALS_FILE")
    path = Path(credentials_file).expanduser()
    if not path.is_file():
        raise NotConfigured(f"GOOGLE_CREDENTIALS_FILE {path} does not exist: put the service-account JSON key there")
    return path


def get_client(credentials_file: Path | str) -> Any:
    """The process's gspread client for a service-account key file (built once, rebuilt after a fork)."""
    path = _credentials_path(credentials_file)
    key = (str(path.resolve()), os.getpid())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import gspread
            from google.oauth2.service_account import Credentials

            try:
                credentials = Credentials.from_service_account_file(str(path), scopes=list(SCOPES))
            except (ValueError, KeyError, OSError) as exc:
                raise PermanentError(
                    f"GOOGLE_CREDENTIALS_FILE {path} is not a usable service-account key ({type(exc).__name__})"
                ) from None
            client = gspread.Client(auth=credentials)
            client.set_timeout(REQUEST_TIMEOUT)
            _clients[key] = client
    return client


def reset_clients() -> None:
    """Forget the cached clients (tests, or after rotating the key file)."""
    with _clients_lock:
        _clients.clear()


class GoogleWorkbook:
    """A :class:`~cars_bot.sheets.workbook.Workbook` backed by a Google spreadsheet.

    `client` is a ready ``gspread.Client`` (tests point one at a local server); without it the
    process-wide client for `credentials_file` is used. Nothing is requested before the first call.
    """

    def __init__(self, credentials_file: Path | str | None, spreadsheet_id: str, *, client: Any = None) -> None:
        if not spreadsheet_id:
            raise NotConfigured("Google Sheets is not configured: set GOOGLE_SPREADSHEET_ID")
        self.credentials_file = Path(credentials_file).expanduser() if credentials_file else None
        if client is None:
            _credentials_path(self.credentials_file)
        self.spreadsheet_id = spreadsheet_id
        self._client = client
        self._sheets: dict[str, dict[str, Any]] | None = None
        self._grids: dict[str, list[list[str]]] = {}
        self._pending: dict[str, dict[int, dict[str, CellValue]]] = {}
        #: Requests sent and write requests among them (tests and diagnostics).
        self.requests = 0
        self.writes = 0

    def __repr__(self) -> str:
        return f"GoogleWorkbook(spreadsheet={mask(self.spreadsheet_id)!r})"

    # Workbook interface ------------------------------------------------------------------------
    def read(self, sheet: str) -> list[Row]:
        """Every non-blank data row of `sheet`, from one ``values.get`` of the whole sheet."""
        grid = self._grid(sheet)
        if not grid:
            return []
        headers = canonical_headers(sheet, grid[0])
        rows = []
        for number, cells in enumerate(grid[1:], start=2):
            if not any(c.strip() for c in cells):
                continue
            row = Row(number)
            for index, header in enumerate(headers):
                if header and header not in row:
                    row[header] = cells[index] if index < len(cells) else ""
            rows.append(row)
        return rows

    def update(self, sheet: str, row_number: int, values: Mapping[str, CellValue]) -> None:
        """Queue `values` for row `row_number` (2 or more); sent by :meth:`flush` in one batch."""
        if row_number < 2:
            raise ValueError(f"row {row_number}: data rows start at 2 (row 1 holds the headers)")
        self._pending.setdefault(sheet, {}).setdefault(row_number, {}).update(values)

    def flush(self) -> int:
        """Send every queued update in one ``values.batchUpdate``; returns the cells written."""
        if not self._pending:
            return 0
        from gspread.utils import absolute_range_name, rowcol_to_a1

        data = []
        for sheet, rows in self._pending.items():
            columns = self._columns(sheet)
            for row_number, cells in sorted(rows.items()):
                for header, value in cells.items():
                    col = self._column(sheet, columns, header)
                    data.append({"range": absolute_range_name(sheet, rowcol_to_a1(row_number, col + 1)),
                                 "values": [[_user_entered(value)]]})
        self._call("write to", self._http().values_batch_update, self.spreadsheet_id,
                   body={"valueInputOption": WRITE_OPTION, "data": data}, write=True)
        for sheet, rows in self._pending.items():
            grid = self._grids.get(sheet)
            if grid is None:
                continue
            columns = self._columns(sheet)
            for row_number, cells in rows.items():
                while len(grid) < row_number:
                    grid.append([])
                line = grid[row_number - 1]
                for header, value in cells.items():
                    col = columns[header_key(header)]
                    line.extend([""] * (col + 1 - len(line)))
                    line[col] = cell_text(value)
        self._pending.clear()
        return len(data)

    def append(self, sheet: str, rows: Sequence[Mapping[str, CellValue]], *, unique_by: str | None = None) -> int:
        """Append `rows` with one ``values.append`` (INSERT_ROWS); see the protocol for `unique_by`.

        With `unique_by` the sheet is read again just before appending, so a row appended by another
        run a moment ago is not appended twice.
        """
        self.flush()
        if not rows:
            return 0
        from gspread.utils import absolute_range_name

        if unique_by is not None:
            self._grids.pop(sheet, None)
        if self._grid(sheet) is None:
            self.ensure_sheet(sheet)
        grid = self._grid(sheet) or [[]]
        columns = self._columns(sheet)
        width = max(columns.values(), default=-1) + 1
        seen: set[str] = set()
        key_col = None
        if unique_by is not None:
            key_col = self._column(sheet, columns, unique_by)
            seen = {line[key_col].strip() for line in grid[1:] if len(line) > key_col} - {""}
        values = []
        for row in rows:
            line: list[Any] = [""] * width
            for header, value in row.items():
                line[self._column(sheet, columns, header)] = _user_entered(value)
            if key_col is not None:
                key = cell_text(row.get(unique_by)).strip()  # type: ignore[arg-type]
                if key and key in seen:
                    continue
                seen.add(key)
            values.append(line)
        if not values:
            return 0
        self._call("append to", self._http().values_append, self.spreadsheet_id, absolute_range_name(sheet, "A1"),
                   params={"valueInputOption": WRITE_OPTION, "insertDataOption": "INSERT_ROWS"},
                   body={"majorDimension": "ROWS", "values": values}, write=True)
        self._grids.pop(sheet, None)  # Google decides where the table ends: read again if needed
        return len(values)

    def worksheets(self) -> list[str]:
        """The spreadsheet's worksheet titles (from its metadata: one request, then cached)."""
        return list(self._metadata())

    def ensure_sheet(self, sheet: str) -> bool:
        """Create `sheet` (header row frozen) if missing, or add the layout headers it lacks."""
        from gspread.utils import absolute_range_name, rowcol_to_a1

        wanted = list(layout_headers(sheet))
        sheets = self._metadata()
        if sheet not in sheets:
            body = {"requests": [{"addSheet": {"properties": {
                "title": sheet,
                "gridProperties": {"rowCount": NEW_SHEET_ROWS, "columnCount": len(wanted), "frozenRowCount": 1},
            }}}]}
            reply = self._call("create a worksheet in", self._http().batch_update, self.spreadsheet_id, body,
                               write=True)
            sheets[sheet] = reply["replies"][0]["addSheet"]["properties"]
            start, missing = 0, wanted
            self._grids[sheet] = [[]]
        else:
            grid = self._grid(sheet) or []
            if not grid:
                grid.append([])
                self._grids[sheet] = grid
            header_row = grid[0]
            have = {header_key(h) for h in header_row if h.strip()}
            missing = [h for h in wanted if header_key(h) not in have]
            if not missing:
                return False
            start = max((i for i, h in enumerate(header_row) if h.strip()), default=-1) + 1
            self._grow_columns(sheet, start + len(missing))
        cell_range = f"{rowcol_to_a1(1, start + 1)}:{rowcol_to_a1(1, start + len(missing))}"
        self._call("write headers to", self._http().values_batch_update, self.spreadsheet_id,
                   body={"valueInputOption": "RAW",
                         "data": [{"range": absolute_range_name(sheet, cell_range), "values": [missing]}]},
                   write=True)
        header_row = self._grids[sheet][0]
        header_row.extend([""] * (start + len(missing) - len(header_row)))
        header_row[start:start + len(missing)] = missing
        return True

    # internals -----------------------------------------------------------------------------------
    def _http(self) -> Any:
        client = self._client
        if client is None:
            client = self._client = get_client(self.credentials_file)  # type: ignore[arg-type]
        return client.http_client

    def _metadata(self) -> dict[str, dict[str, Any]]:
        if self._sheets is None:
            meta = self._call("read", self._http().fetch_sheet_metadata, self.spreadsheet_id,
                              params={"includeGridData": "false"})
            self._sheets = {s["properties"]["title"]: s["properties"] for s in meta.get("sheets", [])}
        return self._sheets

    def _grid(self, sheet: str) -> list[list[str]] | None:
        """The sheet's cells as text (cached for the life of this object); None if the sheet is missing."""
        if sheet in self._grids:
            return self._grids[sheet]
        if sheet not in self._metadata():
            return None
        from gspread.utils import absolute_range_name

        reply = self._call(f"read worksheet {sheet!r} of", self._http().values_get, self.spreadsheet_id,
                           absolute_range_name(sheet), params=dict(READ_PARAMS))
        raw = reply.get("values", [])
        header_row = [cell_text(v).strip() for v in raw[0]] if raw else []
        date_cols = {i for i, h in enumerate(canonical_headers(sheet, header_row))
                     if h in DATE_COLUMNS.get(sheet, ())}
        grid = [header_row]
        for line in raw[1:]:
            grid.append([_date_text(v) if i in date_cols else cell_text(v) for i, v in enumerate(line)])
        self._grids[sheet] = grid
        return grid

    def _columns(self, sheet: str) -> dict[str, int]:
        grid = self._grid(sheet)
        if grid is None:
            raise PermanentError(f"worksheet {sheet!r} not found in spreadsheet {mask(self.spreadsheet_id)}")
        columns: dict[str, int] = {}
        for index, header in enumerate(grid[0] if grid else []):
            if header.strip():
                columns.setdefault(header_key(header), index)
        return columns

    def _column(self, sheet: str, columns: dict[str, int], header: str) -> int:
        try:
            return columns[header_key(header)]
        except KeyError:
            raise PermanentError(f"worksheet {sheet!r} has no column {header!r} in its header row") from None

    def _grow_columns(self, sheet: str, needed: int) -> None:
        props = self._metadata()[sheet]
        grid_props = props.setdefault("gridProperties", {})
        have = int(grid_props.get("columnCount", 26))
        if needed <= have:
            return
        body = {"requests": [{"appendDimension": {"sheetId": props.get("sheetId", 0), "dimension": "COLUMNS",
                                                  "length": needed - have}}]}
        self._call("add columns to", self._http().batch_update, self.spreadsheet_id, body, write=True)
        grid_props["columnCount"] = needed

    def _call(self, action: str, fn: Callable[..., T], *args: Any, write: bool = False, **kwargs: Any) -> T:
        """One API request, with gspread/requests/google-auth errors turned into this project's errors."""
        import requests
        from google.auth import exceptions as auth_errors
        from gspread.exceptions import APIError

        self.requests += 1
        if write:
            self.writes += 1
        try:
            return fn(*args, **kwargs)
        except APIError as exc:
            raise self._api_error(exc, action) from exc
        except (requests.ConnectionError, requests.Timeout, auth_errors.TransportError) as exc:
            raise TransientError(f"Google Sheets unreachable ({action} spreadsheet): {type(exc).__name__}") from exc
        except auth_errors.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise TransientError(f"Google token refresh failed, will retry: {exc}") from exc
            raise PermanentError(
                f"Google rejected the service-account credentials in GOOGLE_CREDENTIALS_FILE: {exc}"
            ) from exc

    def _api_error(self, exc: Any, action: str) -> CarsBotError:
        response = getattr(exc, "response", None)
        status = int(getattr(response, "status_code", 0) or getattr(exc, "code", 0) or 0)
        error = exc.error if isinstance(getattr(exc, "error", None), Mapping) else {}
        message = " ".join(str(error.get("message", "")).split())[:300]
        reasons = {e.get("reason") for e in error.get("errors", []) or [] if isinstance(e, Mapping)}
        spreadsheet = mask(self.spreadsheet_id)
        quota = (status == 429 or error.get("status") == "RESOURCE_EXHAUSTED" or bool(reasons & QUOTA_REASONS)
                 or (status == 403 and "quota" in message.lower()))
        if quota or status == 408 or status >= 500:
            kind = "rate limit / quota" if quota else "server error"
            return TransientError(f"Google Sheets {kind} (HTTP {status}) while trying to {action} "
                                  f"spreadsheet {spreadsheet}: {message}", retry_after=_retry_after(response))
        if status == 401:
            return PermanentError(f"Google rejected the credentials (HTTP 401) while trying to {action} "
                                  f"spreadsheet {spreadsheet}: check GOOGLE_CREDENTIALS_FILE")
        if status == 403:
            return PermanentError(
                f"Google refused to {action} spreadsheet {spreadsheet} (HTTP 403): share the spreadsheet with "
                f"the service account{self._account_hint()} as an editor and enable the Google Sheets API"
            )
        if status == 404:
            return PermanentError(f"Google spreadsheet {spreadsheet} not found (HTTP 404): check GOOGLE_SPREADSHEET_ID")
        return PermanentError(f"Google Sheets refused to {action} spreadsheet {spreadsheet} (HTTP {status}): {message}")

    def _account_hint(self) -> str:
        if self.credentials_file is None:
            return ""
        try:
            email = json.loads(self.credentials_file.read_text(encoding="utf-8")).get("client_email")
        except (OSError, ValueError, AttributeError):
            return ""
        return f" {email}" if isinstance(email, str) and email else ""


def _date_text(value: Any) -> str:
    """A date cell read with SERIAL_NUMBER: numbers become text dates, anything else stays as typed."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 2958466:
        return serial_to_text(float(value))
    return cell_text(value)


def _user_entered(value: CellValue) -> Any:
    """A value for a USER_ENTERED write: typed JSON for booleans/numbers, formula-looking text kept as text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text[:1] in ("=", "+", "-") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _retry_after(response: Any) -> float:
    """Seconds Google asked us to wait (see :func:`~cars_bot.retry_after.retry_after_seconds`); 60 when it gave none."""
    seconds = retry_after_seconds(getattr(response, "headers", None))
    return DEFAULT_RETRY_AFTER if seconds is None else seconds
