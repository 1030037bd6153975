"""The admin spreadsheet's layout and the small interface both backends implement.

The layout is the prior system's (prior-system.md section 5): worksheet titles in Russian, row 1
holds the headers. Code refers to columns by their header, never by letter, so a column moved by an
admin does not break the sync; headers are matched ignoring case and surrounding/double spaces.

Two backends implement :class:`Workbook`:

- :class:`cars_bot.sheets.google.GoogleWorkbook`, the real spreadsheet through gspread, used when
  ``GOOGLE_CREDENTIALS_FILE`` and ``GOOGLE_SPREADSHEET_ID`` are both set;
- :class:`cars_bot.sheets.local.LocalWorkbook`, a JSON file under ``CARSCTL_HOME`` otherwise.

:func:`cars_bot.sheets.backends.open_workbook` picks one; this module does not import either, so the
interface does not depend on its implementations. It imports only the standard library.

Cells cross the interface as strings: a blank cell is ``""``, a boolean is ``"TRUE"``/``"FALSE"``,
a whole number has no decimal part, a date column holds ``"YYYY-mm-dd HH:MM:SS"`` (UTC) or whatever
a person typed. Values written may be ``str``, ``int``, ``float``, ``bool`` or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

# Worksheet titles ---------------------------------------------------------------------------------
CHANNELS = "Каналы для мониторинга"
FILTERS = "Настройки фильтров"
SUBSCRIBERS = "Подписчики"
ANALYTICS = "Аналитика"
QUEUE = "Очередь публикаций"
LOGS = "Логи"

# "Каналы для мониторинга" -------------------------------------------------------------------------
CH_ID = "ID"  # A, manual
CH_USERNAME = "Username канала"  # B, "@name" or a t.me link; the match key; manual
CH_TITLE = "Название канала"  # C, manual or filled by the bot when blank
CH_PHONE = "Номер"  # D, seller phone; manual
CH_SELLER = "Телеграмм"  # E, seller Telegram username; manual
CH_ACTIVE = "Активен"  # F, TRUE/FALSE; manual
CH_ADDED = "Дата добавления"  # G, bot, when the channel first reaches the database
CH_PUBLISHED = "Опубликовано"  # H, bot (channel statistics)
CH_LAST_POST = "Последний пост"  # I, bot (channel statistics)

# "Настройки фильтров": key/value rows -------------------------------------------------------------
FLT_KEY = "Параметр"
FLT_VALUE = "Значение"
FLT_NOTE = "Описание"

# "Подписчики" ---------------------------------------------------------------------------------------
SUB_USER_ID = "User ID"  # A, Telegram user id; the match key
SUB_USERNAME = "Username"  # B, bot
SUB_NAME = "Имя"  # C, bot
SUB_TYPE = "Тип подписки"  # D, admin: FREE / MONTHLY / YEARLY
SUB_ACTIVE = "Активна"  # E, admin: TRUE / FALSE
SUB_START = "Дата начала"  # F, admin
SUB_END = "Дата окончания"  # G, admin
SUB_REGISTERED = "Дата регистрации"  # H, bot
SUB_CONTACTS = "Запросов контактов"  # I, bot
SUB_SYNCED = "Синхронизировано"  # J, bot: fingerprint of D-G as of the last sync (see sheets.subscriber_sync)

# "Аналитика": one row per UTC day -------------------------------------------------------------------
AN_DATE = "Дата"
AN_PROCESSED = "Обработано постов"
AN_PUBLISHED = "Опубликовано"
AN_NEW_USERS = "Новых подписчиков"
AN_ACTIVE_SUBS = "Активных подписок"
AN_CONTACTS = "Запросов контактов"
AN_REVENUE = "Доход"
AN_AI_COST = "Расходы на ИИ, $"

# "Очередь публикаций": one row per post that passed the filters ----------------------------------------
Q_POST_ID = "ID поста"  # A, bot; the match key
Q_CHANNEL = "Канал-источник"  # B, bot
Q_PROCESSED = "Дата обработки"  # C, bot
Q_CAR = "Марка/Модель"  # D, bot
Q_PRICE = "Цена"  # E, bot
Q_STATUS = "Статус"  # F, PENDING / APPROVED / REJECTED (admin) / PUBLISHED (bot)
Q_LINK = "Ссылка на оригинал"  # G, bot
Q_NOTE = "Примечание"  # H, admin: the reason of a rejection

# "Логи" ---------------------------------------------------------------------------------------------
LOG_TIME = "Дата/время"
LOG_TYPE = "Тип события"
LOG_TEXT = "Описание"
LOG_COMPONENT = "Компонент"

#: Worksheet title -> its header row, in column order.
LAYOUT: dict[str, tuple[str, ...]] = {
    CHANNELS: (CH_ID, CH_USERNAME, CH_TITLE, CH_PHONE, CH_SELLER, CH_ACTIVE, CH_ADDED, CH_PUBLISHED,
               CH_LAST_POST),
    FILTERS: (FLT_KEY, FLT_VALUE, FLT_NOTE),
    SUBSCRIBERS: (SUB_USER_ID, SUB_USERNAME, SUB_NAME, SUB_TYPE, SUB_ACTIVE, SUB_START, SUB_END,
                  SUB_REGISTERED, SUB_CONTACTS, SUB_SYNCED),
    ANALYTICS: (AN_DATE, AN_PROCESSED, AN_PUBLISHED, AN_NEW_USERS, AN_ACTIVE_SUBS, AN_CONTACTS, AN_REVENUE,
                AN_AI_COST),
    QUEUE: (Q_POST_ID, Q_CHANNEL, Q_PROCESSED, Q_CAR, Q_PRICE, Q_STATUS, Q_LINK, Q_NOTE),
    LOGS: (LOG_TIME, LOG_TYPE, LOG_TEXT, LOG_COMPONENT),
}

#: Columns holding dates (Google returns them as serial numbers; backends render them as text).
DATE_COLUMNS: dict[str, frozenset[str]] = {
    CHANNELS: frozenset({CH_ADDED}),
    SUBSCRIBERS: frozenset({SUB_START, SUB_END, SUB_REGISTERED}),
    ANALYTICS: frozenset({AN_DATE}),
    QUEUE: frozenset({Q_PROCESSED}),
    LOGS: frozenset({LOG_TIME}),
}

#: How dates are written to the sheet (UTC). Parsing also accepts the date-only form.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

CellValue = str | int | float | bool | None

#: Day zero of spreadsheet serial dates (Google Sheets and Excel's 1900 system).
SERIAL_EPOCH = datetime(1899, 12, 30)


class Row(dict[str, str]):
    """One sheet row: header -> cell text, plus :attr:`number`, its 1-based row number in the sheet.

    Row 1 is the header row, so data rows start at 2. A row behaves as a plain ``dict``; a header
    missing from the sheet reads as ``""`` through :meth:`cell`.
    """

    def __init__(self, number: int, cells: Mapping[str, str] | None = None) -> None:
        super().__init__(cells or {})
        self.number = number

    def cell(self, header: str) -> str:
        """The cell under `header`, stripped; ``""`` when blank or when the column is missing."""
        return (self.get(header) or "").strip()

    def __repr__(self) -> str:
        return f"Row({self.number}, {dict.__repr__(self)})"


@runtime_checkable
class Workbook(Protocol):
    """A spreadsheet of named worksheets whose first row holds the headers."""

    def read(self, sheet: str) -> list[Row]:
        """Every non-blank data row of `sheet` (one request per sheet per workbook object).

        A missing worksheet reads as ``[]``. Header cells matching the layout are returned with the
        layout's spelling.
        """
        ...

    def update(self, sheet: str, row_number: int, values: Mapping[str, CellValue]) -> None:
        """Queue a write of `values` (header -> value) into row `row_number`; see :meth:`flush`."""
        ...

    def flush(self) -> int:
        """Send every queued :meth:`update` in one batch; returns the number of cells written."""
        ...

    def append(self, sheet: str, rows: Sequence[Mapping[str, CellValue]], *, unique_by: str | None = None) -> int:
        """Append `rows` after the last row, in one request; returns how many were appended.

        With `unique_by` (a header), rows whose value in that column is already present in the sheet
        at the time of writing are left out, so re-running an append does not duplicate rows.
        Queued updates are flushed first.
        """
        ...

    def worksheets(self) -> list[str]:
        """The titles of the worksheets the workbook has (any, not only the layout's)."""
        ...

    def ensure_sheet(self, sheet: str) -> bool:
        """Create `sheet` with its header row if missing, and add any layout header the sheet lacks
        (after its last column). Returns True when something was created or added."""
        ...


def header_key(text: str) -> str:
    """The form headers are compared in: case-folded, with runs of whitespace collapsed."""
    return " ".join(str(text).split()).casefold()


def canonical_headers(sheet: str, headers: Sequence[str]) -> list[str]:
    """Map a sheet's header cells to the layout's spelling where they match (others stay as they are)."""
    known = {header_key(h): h for h in LAYOUT.get(sheet, ())}
    return [known.get(header_key(h), str(h).strip()) for h in headers]


def layout_headers(sheet: str) -> tuple[str, ...]:
    """The header row of a known worksheet; raises KeyError naming the sheet otherwise."""
    try:
        return LAYOUT[sheet]
    except KeyError:
        raise KeyError(f"unknown worksheet {sheet!r}; known: {', '.join(LAYOUT)}") from None


def cell_text(value: object) -> str:
    """A cell value as the text the interface returns (``True`` -> ``"TRUE"``, ``5.0`` -> ``"5"``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def serial_to_text(serial: float) -> str:
    """A spreadsheet serial date (days since 1899-12-30) as ``YYYY-mm-dd[ HH:MM:SS]`` text."""
    moment = SERIAL_EPOCH + timedelta(seconds=round(serial * 86400))
    if moment.hour == moment.minute == moment.second == 0 and float(serial).is_integer():
        return moment.strftime(DATE_FORMAT)
    return moment.strftime(DATETIME_FORMAT)

