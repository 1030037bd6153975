"""A local stand-in for the Google Sheets v4 REST API, on 127.0.0.1, for the real gspread client.

It speaks the subset gspread's HTTPClient uses here: spreadsheet metadata, ``values.get``,
``values.batchGet``, ``values.batchUpdate``, ``values.append`` and ``spreadsheets.batchUpdate``
(``addSheet``, ``appendDimension``). Writes emulate ``USER_ENTERED`` (TRUE/FALSE become booleans,
numbers become numbers, ``YYYY-mm-dd[ HH:MM:SS]`` become serial dates, a leading apostrophe keeps
text) and reads honour ``UNFORMATTED_VALUE`` + ``SERIAL_NUMBER``, like the real service. Writing
beyond the grid fails with 400 "exceeds grid limits", as Google does. Queued faults let a test make
the next request answer 429/403/404/5xx.

The client side is :class:`LocalSheetsSession`: google-auth's own AuthorizedSession with anonymous
credentials (no OAuth traffic) that rewrites ``https://sheets.googleapis.com`` to this server and
refuses any other host.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession

GOOGLE_SHEETS = "https://sheets.googleapis.com"
EPOCH = datetime(1899, 12, 30)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?$")
_CELL = re.compile(r"^([A-Z]+)?(\d+)?$")


def _col_index(letters: str) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - 64)
    return index - 1


def parse_range(a1: str) -> tuple[str, int, int]:
    """``'Title'!B3:C4`` -> (title, first row index, first column index), 0-based."""
    if "!" in a1:
        title, cells = a1.rsplit("!", 1)
    else:
        title, cells = a1, "A1"
    if title.startswith("'") and title.endswith("'"):
        title = title[1:-1].replace("''", "'")
    start = cells.split(":", 1)[0]
    match = _CELL.match(start)
    if not match:
        raise ValueError(f"Unable to parse range: {a1}")
    col = _col_index(match.group(1)) if match.group(1) else 0
    row = int(match.group(2)) - 1 if match.group(2) else 0
    return title, row, col


def user_entered(value: Any) -> Any:
    """What Sheets stores for a USER_ENTERED value."""
    if not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    if _DATE.match(value):
        fmt = "%Y-%m-%d %H:%M:%S" if " " in value else "%Y-%m-%d"
        days = (datetime.strptime(value, fmt) - EPOCH).total_seconds() / 86400
        return int(days) if days.is_integer() else days
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


class FakeSpreadsheet:
    """One spreadsheet: worksheets as lists of rows of stored (typed) values."""

    def __init__(self, spreadsheet_id: str) -> None:
        self.id = spreadsheet_id
        self.sheets: dict[str, dict[str, Any]] = {}

    def add_sheet(self, title: str, rows: list[list[Any]] | None = None, *, columns: int = 26,
                  row_count: int = 1000) -> None:
        self.sheets[title] = {"sheetId": len(self.sheets) + 1000, "rows": [list(r) for r in rows or []],
                              "columnCount": columns, "rowCount": row_count}

    def values(self, title: str) -> list[list[Any]]:
        """The stored rows, trailing blanks trimmed (as values.get returns them)."""
        out = []
        for row in self.sheets[title]["rows"]:
            row = list(row)
            while row and row[-1] in ("", None):
                row.pop()
            out.append(row)
        while out and not out[-1]:
            out.pop()
        return out

    def write(self, title: str, row: int, col: int, values: list[list[Any]]) -> None:
        sheet = self.sheets[title]
        for r, line in enumerate(values):
            for c, value in enumerate(line):
                if col + c >= sheet["columnCount"]:
                    raise GridError(f"Range ('{title}'!R{row + r + 1}C{col + c + 1}) exceeds grid limits. "
                                    f"Max rows: {sheet['rowCount']}, max columns: {sheet['columnCount']}")
                rows = sheet["rows"]
                while len(rows) <= row + r:
                    rows.append([])
                target = rows[row + r]
                target.extend([""] * (col + c + 1 - len(target)))
                target[col + c] = user_entered(value)


class GridError(ValueError):
    pass


class FakeSheetsServer:
    """The HTTP server; `requests` records (method, path) of every request served."""

    def __init__(self) -> None:
        self.spreadsheets: dict[str, FakeSpreadsheet] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> FakeSheetsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def spreadsheet(self, spreadsheet_id: str) -> FakeSpreadsheet:
        return self.spreadsheets.setdefault(spreadsheet_id, FakeSpreadsheet(spreadsheet_id))

    def fail_next(self, status: int, message: str = "error", *, headers: dict[str, str] | None = None,
                  status_text: str = "", reason: str | None = None) -> None:
        error: dict[str, Any] = {"code": status, "message": message, "status": status_text}
        if reason:
            error["errors"] = [{"reason": reason, "message": message}]
        self.faults.append((status, headers or {}, {"error": error}))

    def session(self) -> LocalSheetsSession:
        return LocalSheetsSession(self.base_url)

    def count(self, method: str | None = None, contains: str = "") -> int:
        return sum(1 for m, p in self.requests if (method is None or m == method) and contains in p)


class LocalSheetsSession(AuthorizedSession):
    """google-auth's AuthorizedSession, anonymous, pointed at the fake server instead of Google."""

    def __init__(self, base_url: str) -> None:
        super().__init__(AnonymousCredentials())
        self.base_url = base_url
        self.trust_env = False  # no proxies from the environment

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if url.startswith(GOOGLE_SHEETS):
            url = self.base_url + url[len(GOOGLE_SHEETS):]
        elif not url.startswith(self.base_url):
            raise AssertionError(f"the test tried to reach {url}")
        return super().request(method, url, *args, **kwargs)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSheetsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, status_text: str) -> None:
        self._reply(status, {"error": {"code": status, "message": message, "status": status_text}})

    def _serve(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        query = parse_qs(parts.query)
        with fake.lock:
            fake.requests.append((method, unquote(parts.path)))
            if fake.faults:
                status, headers, payload = fake.faults.pop(0)
                self._reply(status, payload, headers)
                return
            match = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", parts.path)
            if not match or match.group(1) not in fake.spreadsheets:
                self._error(404, "Requested entity was not found.", "NOT_FOUND")
                return
            book = fake.spreadsheets[match.group(1)]
            rest = match.group(2)
            try:
                self._route(method, book, rest, query, body)
            except GridError as exc:
                self._error(400, str(exc), "INVALID_ARGUMENT")
            except (KeyError, ValueError) as exc:
                self._error(400, f"Unable to parse range: {exc}", "INVALID_ARGUMENT")

    def _route(self, method: str, book: FakeSpreadsheet, rest: str, query: dict[str, list[str]],
               body: dict[str, Any]) -> None:
        if method == "GET" and rest == "":
            sheets = [{"properties": {"sheetId": s["sheetId"], "title": t, "index": i, "sheetType": "GRID",
                                      "gridProperties": {"rowCount": s["rowCount"], "columnCount": s["columnCount"]}}}
                      for i, (t, s) in enumerate(book.sheets.items())]
            self._reply(200, {"spreadsheetId": book.id, "properties": {"title": "Cars", "locale": "ru_RU"},
                              "sheets": sheets})
        elif method == "POST" and rest == ":batchUpdate":
            replies: list[dict[str, Any]] = []
            for request in body["requests"]:
                if "addSheet" in request:
                    props = request["addSheet"]["properties"]
                    grid = props.get("gridProperties", {})
                    book.add_sheet(props["title"], columns=grid.get("columnCount", 26),
                                   row_count=grid.get("rowCount", 1000))
                    sheet = book.sheets[props["title"]]
                    replies.append({"addSheet": {"properties": {
                        "sheetId": sheet["sheetId"], "title": props["title"], "index": len(book.sheets) - 1,
                        "gridProperties": {"rowCount": sheet["rowCount"], "columnCount": sheet["columnCount"]}}}})
                elif "appendDimension" in request:
                    dim = request["appendDimension"]
                    sheet = next(s for s in book.sheets.values() if s["sheetId"] == dim["sheetId"])
                    key = "columnCount" if dim["dimension"] == "COLUMNS" else "rowCount"
                    sheet[key] += dim["length"]
                    replies.append({})
                else:
                    raise ValueError(f"unsupported request {request}")
            self._reply(200, {"spreadsheetId": book.id, "replies": replies})
        elif method == "GET" and rest == "/values:batchGet":
            ranges = []
            for a1 in query.get("ranges", []):
                title, _, _ = parse_range(a1)
                ranges.append({"range": a1, "majorDimension": "ROWS", "values": book.values(title)})
            self._reply(200, {"spreadsheetId": book.id, "valueRanges": ranges})
        elif method == "POST" and rest == "/values:batchUpdate":
            for item in body["data"]:
                title, row, col = parse_range(item["range"])
                book.write(title, row, col, item["values"])
            self._reply(200, {"spreadsheetId": book.id, "totalUpdatedCells": len(body["data"])})
        elif method == "POST" and rest.startswith("/values/") and rest.endswith(":append"):
            title, _, _ = parse_range(unquote(rest[len("/values/"):-len(":append")]))
            start = len(book.values(title))
            book.write(title, start, 0, body["values"])
            self._reply(200, {"spreadsheetId": book.id, "tableRange": title,
                              "updates": {"updatedRange": f"'{title}'!A{start + 1}",
                                          "updatedRows": len(body["values"])}})
        elif method == "GET" and rest.startswith("/values/"):
            a1 = unquote(rest[len("/values/"):])
            title, _, _ = parse_range(a1)
            if query.get("valueRenderOption") != ["UNFORMATTED_VALUE"]:
                raise ValueError("this fake only serves UNFORMATTED_VALUE reads")
            self._reply(200, {"range": a1, "majorDimension": "ROWS", "values": book.values(title)})
        else:
            raise ValueError(f"unsupported {method} {rest}")
