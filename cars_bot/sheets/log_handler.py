"""The worksheet "Логи": warnings and errors of the workers and the monitor, with ``LOG_TO_SHEETS=on``.

:class:`SheetsLogHandler` never blocks the code that logs: ``emit`` only formats the record (secrets
masked) into a bounded in-memory buffer. A daemon thread of the process appends the buffer to the
worksheet in ONE request at most once a minute (:data:`FLUSH_INTERVAL`), at most :data:`MAX_ROWS`
rows per write; what does not fit is counted and reported in one extra row ("N more messages were
dropped"), so a storm of errors costs one write a minute and never grows memory. A failed write is
logged to the process's other handlers (never to this one) and the batch is dropped, not retried.
Records of the Sheets code and of the HTTP libraries are left out, so a failing spreadsheet cannot
feed itself. Pool processes forked by a worker start their own thread on their first record.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from cars_bot.sheets.workbook import LOG_COMPONENT, LOG_TEXT, LOG_TIME, LOG_TYPE, LOGS, CellValue, Workbook

#: Seconds between two writes to the sheet (Google's write quota is per minute).
FLUSH_INTERVAL = 60.0
#: Rows per write; more records in one interval are dropped and counted.
MAX_ROWS = 50
#: Loggers never written to the sheet (the sheet's own code and its transport).
IGNORED_PREFIXES = ("cars_bot.sheets", "gspread", "urllib3", "google", "requests")
_TYPES = {logging.CRITICAL: "ERROR", logging.ERROR: "ERROR", logging.WARNING: "WARNING"}
_internal = logging.getLogger("cars_bot.sheets.log_handler")


class SheetsLogHandler(logging.Handler):
    """A logging handler buffering WARNING and above for the worksheet "Логи" (see the module docstring)."""

    def __init__(self, open_workbook: Callable[[], Workbook], component: str, *,
                 interval: float = FLUSH_INTERVAL, max_rows: int = MAX_ROWS, start_thread: bool = True) -> None:
        super().__init__(logging.WARNING)
        self.open_workbook = open_workbook
        self.component = component
        self.interval = interval
        self.max_rows = max_rows
        self.start_thread = start_thread
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._buffer: deque[dict[str, CellValue]] = deque(maxlen=self.max_rows)
        self._dropped = 0
        self._buffer_lock = threading.Lock()
        self._workbook: Workbook | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(IGNORED_PREFIXES):
            return
        try:
            if self._pid != os.getpid():  # a forked pool process: its own buffer and thread
                self._reset()
            from cars_bot.config import get_settings
            from cars_bot.secret_masking import mask_secrets_in

            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            row: dict[str, CellValue] = {
                LOG_TIME: datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                LOG_TYPE: _TYPES.get(record.levelno, "WARNING"),
                LOG_TEXT: mask_secrets_in(text, get_settings())[:1000],
                LOG_COMPONENT: f"{self.component}: {record.name}",
            }
            with self._buffer_lock:
                if len(self._buffer) == self.max_rows:
                    self._dropped += 1
                self._buffer.append(row)
            if self.start_thread and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sheets-log", daemon=True)
                self._thread.start()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def take(self) -> list[dict[str, CellValue]]:
        """The buffered rows (and a row counting the dropped ones), emptying the buffer."""
        with self._buffer_lock:
            rows, dropped = list(self._buffer), self._dropped
            self._buffer.clear()
            self._dropped = 0
        if dropped:
            rows.append({LOG_TIME: rows[-1][LOG_TIME], LOG_TYPE: "WARNING", LOG_COMPONENT: self.component,
                         LOG_TEXT: f"{dropped} more messages were dropped (at most {self.max_rows} a minute)"})
        return rows

    def flush(self) -> None:
        """Append the buffered rows to "Логи" in one request (called by the thread once an interval)."""
        rows = self.take()
        if not rows:
            return
        try:
            if self._workbook is None:
                self._workbook = self.open_workbook()
            self._workbook.append(LOGS, rows)
        except Exception as error:  # noqa: BLE001 - the batch is dropped; the next one may succeed
            self._workbook = None
            _internal.warning("could not write %d log rows to the sheet %r: %s", len(rows), LOGS, error)

    def close(self) -> None:
        self._stop.set()
        super().close()


def install(logger: logging.Logger, component: str) -> SheetsLogHandler | None:
    """Add the handler to `logger` when ``LOG_TO_SHEETS`` is on (once); returns it, or None when off."""
    from cars_bot.config import get_settings

    settings = get_settings()
    if not settings.log_to_sheets:
        return None
    existing = next((h for h in logger.handlers if isinstance(h, SheetsLogHandler)), None)
    if existing is not None:
        return existing

    def open_workbook() -> Workbook:
        from cars_bot.sheets.backends import open_workbook as pick

        return pick(get_settings())

    handler = SheetsLogHandler(open_workbook, component)
    logger.addHandler(handler)
    return handler
