"""Filters sync: the sheet "Настройки фильтров" overrides the environment's filters.

The worksheet holds key/value rows ("Параметр", "Значение"). Five keys are read:

=============================  ======================  ==========================================
"Параметр"                     overrides               value
=============================  ======================  ==========================================
Глобальные ключевые слова      GLOBAL_KEYWORDS         comma list; a post must contain one of them
Порог уверенности AI           MIN_CONFIDENCE_SCORE    0..1 ("0,8" and "80%" are read too)
Минимальная цена               MIN_PRICE               roubles ("1 500 000", "1,5 млн", "900к")
Максимальная цена              MAX_PRICE               roubles
Исключаемые слова              EXCLUDED_WORDS          comma list
=============================  ======================  ==========================================

Rules: a value set in the sheet overrides the environment; a blank value (or a missing row) lets
the environment (or the default) apply. A value that cannot be read is reported (the sync's
`problems`, the table's `error`, `carsctl config show`) and the PREVIOUS value is kept: the last
value read from the sheet, or the environment's when there was none. The values live in the table
``sheet_filters`` (the workers that apply them may run on other machines than the sync);
:func:`settings_with_sheet_filters` lays them over the settings, marking their source "sheet".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cars_bot.sheets.workbook import FILTERS, FLT_KEY, FLT_NOTE, FLT_VALUE, Workbook, header_key

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cars_bot.config import Settings


def parse_words(text: str) -> tuple[str, ...]:
    """A comma (or semicolon, or newline) separated list, lower-cased."""
    return tuple(w.strip().casefold() for w in re.split(r"[,;\n]", text) if w.strip())


def parse_confidence(text: str) -> float:
    """A confidence between 0 and 1: "0.8", "0,8" or "80%"."""
    value = text.strip().replace(",", ".")
    percent = value.endswith("%")
    try:
        number = float(value.rstrip("%").strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number between 0 and 1") from None
    number = number / 100 if percent else number
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{text.strip()!r} is not between 0 and 1")
    return number


_MULTIPLIERS = (("млн", 1_000_000), ("mln", 1_000_000), ("m", 1_000_000), ("тыс", 1_000), ("к", 1_000),
                ("k", 1_000))


def parse_price(text: str) -> int:
    """A price in roubles: "1 500 000", "1 500 000 ₽", "1,5 млн", "900к"."""
    value = re.sub(r"[\s\u00a0\u202f]", "", text.casefold())
    value = re.sub(r"(₽|руб\.?|р\.?|rub)$", "", value).rstrip(".")
    multiplier = 1
    for suffix, factor in _MULTIPLIERS:
        if value.endswith(suffix):
            value, multiplier = value.removesuffix(suffix).rstrip("."), factor
            break
    if re.fullmatch(r"\d{1,3}([.,]\d{3})+", value):  # 1.500.000 or 1,500,000
        value = re.sub(r"[.,]", "", value)
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a price in roubles") from None
    if number < 0:
        raise ValueError(f"{text.strip()!r} is negative")
    return round(number * multiplier)


@dataclass(frozen=True, slots=True)
class FilterKey:
    """One filter row of the sheet: its key, the Settings field and variable it overrides, its parser."""

    label: str
    attr: str
    variable: str
    parse: Callable[[str], Any]
    note: str


FILTER_KEYS: tuple[FilterKey, ...] = (
    FilterKey("Глобальные ключевые слова", "global_keywords", "GLOBAL_KEYWORDS", parse_words,
              "через запятую; пусто: все посты"),
    FilterKey("Порог уверенности AI", "min_confidence", "MIN_CONFIDENCE_SCORE", parse_confidence,
              "от 0 до 1, например 0.75"),
    FilterKey("Минимальная цена", "min_price", "MIN_PRICE", parse_price, "в рублях; пусто: без ограничения"),
    FilterKey("Максимальная цена", "max_price", "MAX_PRICE", parse_price, "в рублях; пусто: без ограничения"),
    FilterKey("Исключаемые слова", "excluded_words", "EXCLUDED_WORDS", parse_words, "через запятую"),
)
_BY_LABEL = {header_key(k.label): k for k in FILTER_KEYS}
_BY_LABEL[header_key("Порог уверенности ИИ")] = _BY_LABEL[header_key("Порог уверенности AI")]


@dataclass(frozen=True, slots=True)
class FilterSyncResult:
    """What one filters sync read: the keys set in the sheet, the ones it could not read, problems."""

    set_in_sheet: tuple[str, ...]  # variables the sheet now overrides
    unreadable: tuple[str, ...]  # variables whose cell could not be read (previous value kept)
    problems: tuple[str, ...]


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _python(attr: str, value: Any) -> Any:
    return tuple(value) if attr in ("global_keywords", "excluded_words") and value is not None else value


def sync_filters(session: Session, workbook: Workbook, now: datetime | None = None) -> FilterSyncResult:
    """Read "Настройки фильтров" into the table ``sheet_filters`` (see the module docstring); commits."""
    from sqlalchemy import select

    from cars_bot.db.models import SheetFilter, utcnow
    from cars_bot.sheets.cells import note_problem

    now = now or utcnow()
    workbook.ensure_sheet(FILTERS)
    cells: dict[str, tuple[int, str]] = {}
    for row in workbook.read(FILTERS):
        key = _BY_LABEL.get(header_key(row.cell(FLT_KEY)))
        if key is not None and key.attr not in cells:
            cells[key.attr] = (row.number, row.cell(FLT_VALUE))
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in FILTER_KEYS:
        number, raw = cells.get(key.attr, (0, ""))
        if raw:
            try:
                parsed[key.attr] = key.parse(raw)
            except ValueError as error:
                errors[key.attr] = f"{FILTERS} row {number} ({key.label}): {error}; the previous value is kept"
    low, high = parsed.get("min_price"), parsed.get("max_price")
    if low is not None and high is not None and low > high:
        for attr in ("min_price", "max_price"):
            del parsed[attr]
            errors[attr] = (f"{FILTERS}: the minimum price {low} is above the maximum {high}; "
                            "the previous values are kept")
    stored = {f.attr: f for f in session.scalars(select(SheetFilter))}
    for key in FILTER_KEYS:
        row = stored.get(key.attr)
        if row is None:
            row = stored[key.attr] = SheetFilter(attr=key.attr, value=None, updated_at=now)
            session.add(row)
        raw = cells.get(key.attr, (0, ""))[1]
        if key.attr in errors:  # the previous value stays
            row.raw, row.error = raw, errors[key.attr]
        else:
            row.value, row.raw, row.error = _json(parsed.get(key.attr)), raw or None, None
    session.commit()
    set_in_sheet = tuple(k.variable for k in FILTER_KEYS if stored[k.attr].value is not None)
    unreadable = tuple(k.variable for k in FILTER_KEYS if k.attr in errors)
    problems = tuple(dict.fromkeys(errors[k.attr] for k in FILTER_KEYS if k.attr in errors))
    for problem in problems:
        note_problem([], problem)  # logged
    return FilterSyncResult(set_in_sheet=set_in_sheet, unreadable=unreadable, problems=problems)


def sheet_values(session: Session) -> dict[str, tuple[Any, str | None]]:
    """Settings field -> (the value the sheet sets, or None; the error of its current cell, or None)."""
    from sqlalchemy import select

    from cars_bot.db.models import SheetFilter

    return {f.attr: (_python(f.attr, f.value), f.error) for f in session.scalars(select(SheetFilter))}


def overlay(settings: Settings, values: dict[str, tuple[Any, str | None]]) -> Settings:
    """`settings` with every value the sheet sets laid over it, its source "sheet"."""
    overrides = {attr: value for attr, (value, _error) in values.items()
                 if value is not None and attr in {k.attr for k in FILTER_KEYS}}
    if not overrides:
        return settings
    sources = {**settings.sources, **{attr: "sheet" for attr in overrides}}
    return dataclasses.replace(settings, **overrides, sources=sources)


def settings_with_sheet_filters(settings: Settings, session: Session) -> Settings:
    """The settings the pipeline filters with: the environment's, overridden by the sheet's values."""
    return overlay(settings, sheet_values(session))


@dataclass(frozen=True, slots=True)
class FilterView:
    """One filter as `carsctl config show` prints it: value, where it came from, the sheet's problem."""

    name: str
    sheet_key: str
    value: Any
    source: str  # sheet | environment | .env | default
    sheet_error: str | None


@dataclass(frozen=True, slots=True)
class FilterReport:
    """The effective filters, and whether the sheet's values could be read from the database."""

    filters: tuple[FilterView, ...]
    sheet_values: str  # "read", or why not (database unreachable, not migrated)


def describe_filters(settings: Settings) -> FilterReport:
    """Each filter's effective value and source; the environment's when the database cannot be read."""
    from pathlib import Path

    from sqlalchemy.exc import SQLAlchemyError

    from cars_bot.config import VARS, display_value
    from cars_bot.db.session import session_factory
    from cars_bot.secret_masking import mask_secrets_in

    values: dict[str, tuple[Any, str | None]] = {}
    state = "read"
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        state = "not read: the database does not exist yet (carsctl db upgrade)"
    else:
        try:
            with session_factory(url)() as session:
                values = sheet_values(session)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0][:160]
            state = f"not read: {mask_secrets_in(reason, settings)}"
    effective = overlay(settings, values)
    by_attr = {v.attr: v for v in VARS}
    return FilterReport(
        filters=tuple(FilterView(name=k.variable, sheet_key=k.label,
                                 value=display_value(by_attr[k.attr], effective.value(by_attr[k.attr])),
                                 source=effective.sources[k.attr], sheet_error=values.get(k.attr, (None, None))[1])
                      for k in FILTER_KEYS),
        sheet_values=state)


def missing_filter_rows(workbook: Workbook) -> list[dict[str, str]]:
    """The filter rows the sheet lacks, with a blank value and a note (for `carsctl sheets init`)."""
    present = {header_key(r.cell(FLT_KEY)) for r in workbook.read(FILTERS)}
    return [{FLT_KEY: k.label, FLT_VALUE: "", FLT_NOTE: k.note} for k in FILTER_KEYS
            if header_key(k.label) not in present]
