"""Deterministic, network-free analysis of Russian car-sale posts.

This is the fallback backend (and the yardstick for the model-based one): it classifies a post,
pulls out the car data with regular expressions, and builds a short summary only from equipment
and condition phrases that are literally in the text. It never invents anything.

How it reads a post:

* contacts (phones, @handles, links, times, dates) are masked first, so "8 900 123 45 67" is never
  read as a price;
* every number is parsed once together with its multiplier and unit ("150к", "1,2 млн",
  "850 т.р.", "98 тыс.км", "1.1кк", "200+ тыс"), then mileage, price, market price and year are
  chosen from those numbers by the words around them ("пробег", "цена", "вложено", "налог",
  "ТО за", "торг", "рыночная цена", "куплен в ...");
* brands, models and cities come from the catalogues in :mod:`cars_bot.ai.schemas` and the
  gazetteer below, with Cyrillic spellings and declensions ("Приору", "Весты", "в Казани").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache, lru_cache

from cars_bot.ai.catalogue import catalogue
from cars_bot.ai.schemas import (
    MODELS,
    Analysis,
    CarData,
    Classification,
    canonical_brand,
    canonical_model,
)

__all__ = [
    "BACKEND_NAME",
    "FALLBACK_SUMMARY",
    "SUMMARY_MAX_WORDS",
    "analyse",
    "classify",
    "extract",
    "summarize",
]

BACKEND_NAME = "rules"
FALLBACK_SUMMARY = "Комплектация и состояние уточняются у продавца."
SUMMARY_MAX_WORDS = 100

# ---------------------------------------------------------------------------------------------
# Preparation: a lower-cased copy with the same offsets, and a copy with contacts masked.

_PHONE_RE = re.compile(
    r"(?:\+\s?7|(?<![\d\w])8)[\s\-]*\(?\d{3,4}\)?[\s\-]*\d{2,3}[\s\-]*\d{2}[\s\-]*\d{2}(?!\d)"
)
_CONTACT_RE = re.compile(
    r"@[\w.]+|https?://\S+|t\.me/\S+|www\.\S+"
    r"|\b\d{1,2}:\d{2}\b"  # times: "после 18:00"
    r"|\b\d{1,2}\.\d{2}\.\d{2,4}\b"  # dates: 15.03.2024
    r"|\b\d{2}\.\d{4}\b"  # month.year: "ТО 03.2024"
    r"|\b[a-hj-npr-z0-9]{17}\b"  # VIN
)


@dataclass(frozen=True)
class _Post:
    original: str
    low: str  # lower case, ё -> е, same length as ``original``
    work: str  # ``low`` with contacts replaced by spaces


def _lower_same_length(text: str) -> str:
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text).replace("ё", "е")


@lru_cache(maxsize=256)
def _prepare(text: str) -> _Post:
    low = _lower_same_length(text)
    work = low
    for pattern in (_CONTACT_RE, _PHONE_RE):
        work = pattern.sub(lambda m: " " * len(m.group(0)), work)
    return _Post(text, low, work)


# ---------------------------------------------------------------------------------------------
# Numbers with their multiplier and unit.

_AMOUNT_RE = re.compile(
    r"(?<![\w.,])(?P<int>\d{1,3}(?:[ \u00a0\u202f.]\d{3})+(?![.,]\d)|\d+)(?:[.,](?P<frac>\d{1,3}))?(?!\d)"
    r"(?P<plus>\s?\+)?\s?"
    r"(?P<scale>млн\.?|миллион\w*|лям\w*|кк(?!\w)|тыс\w*\.?|т\.\s?р\.?|тр(?!\w)|т\.?(?=\s?км)"
    r"|т(?!\w)\.?|к(?!\w)|k(?!\w))?"
    r"\s?(?P<unit>км(?!\w)|руб\w*\.?|р(?!\w)\.?|₽|rub(?!\w))?"
)


@dataclass(frozen=True)
class _Amount:
    start: int
    end: int
    number: float  # as written, before the multiplier
    scale: str | None  # "m" (million), "k" (thousand) or None
    unit: str | None  # "km", "rub" or None
    rub_abbrev: bool  # "т.р.", "тр", "кк": a money-only multiplier

    @property
    def value(self) -> int:
        factor = {"m": 1_000_000, "k": 1_000}.get(self.scale or "", 1)
        return round(self.number * factor)


def _amounts(post: _Post) -> list[_Amount]:
    found: list[_Amount] = []
    for m in _AMOUNT_RE.finditer(post.work):
        int_part, frac = m.group("int"), m.group("frac") or ""
        scale_raw = (m.group("scale") or "").replace(" ", "")
        is_million = scale_raw.startswith(("млн", "миллион", "лям", "кк"))
        if "." in int_part and is_million and re.fullmatch(r"\d{1,3}\.\d{3}", int_part):
            int_part, frac = int_part.split(".")  # "1.250 млн" is a decimal, not 1250 million
        elif len(frac) == 3 and not is_million and not scale_raw:
            int_part, frac = int_part + frac, ""  # "950.000р", "120,000 км": grouped thousands
        digits = re.sub(r"\D", "", int_part)
        if len(digits) > 12:  # an id or a digit run, never a price or a mileage (and float would overflow)
            continue
        number = float(digits + ("." + frac if frac else ""))
        scale: str | None = None
        if is_million:
            scale = "m"
        elif scale_raw:
            scale = "k"
        unit_raw = m.group("unit") or ""
        unit = "km" if unit_raw.startswith("км") else ("rub" if unit_raw else None)
        rub_abbrev = scale_raw.startswith(("т.р", "тр", "кк"))
        if rub_abbrev:
            unit = "rub"
        end = m.end()
        while end > m.start() and post.work[end - 1].isspace():
            end -= 1
        found.append(_Amount(m.start(), end, number, scale, unit, rub_abbrev))
    return found


_CLAUSE_BREAK_RE = re.compile(r"[\n;!?,]|\.\s")


def _clause_before(work: str, pos: int, limit: int = 60) -> str:
    """The text between the last clause break before ``pos`` and ``pos`` (at most ``limit``)."""
    window = work[max(0, pos - limit):pos]
    breaks = list(_CLAUSE_BREAK_RE.finditer(window))
    return window[breaks[-1].end():] if breaks else window


# ---------------------------------------------------------------------------------------------
# Mileage

_MILEAGE_WORD_RE = re.compile(
    r"пробег\w*\s*(?:[:\-–—]\s*)?(?:всего|около|примерно|реальн\w*|честн\w*|родн\w*|~)?\s*$"
)
_MILEAGE_AFTER_RE = re.compile(r"[ \t]*(?:км\.?[ \t]*)?(?:пробег\w*|по\s+одометру|на\s+одометре)")
_NOT_MILEAGE_RE = re.compile(r"(?:запас\w*\s+хода|хода|расход\w*|до\s+то|через|от|до|каждые)\s*~?\s*$")


def _mileage_value(amount: _Amount, after_word: bool) -> int:
    value = amount.value
    if amount.scale is None and after_word and value < 1000 and amount.number == int(amount.number):
        value *= 1000  # "пробег 150" means thousands
    return value


def _find_mileage(post: _Post, amounts: list[_Amount]) -> tuple[_Amount, int] | None:
    """The number that is the mileage (after "пробег" or with "км"), and its value in km."""
    best: tuple[float, _Amount, int] | None = None
    for amount in amounts:
        if amount.unit == "rub" or amount.scale == "m":
            continue
        before = post.work[max(0, amount.start - 30):amount.start]
        word_before = bool(_MILEAGE_WORD_RE.search(before))
        word_after = amount.number >= 10 and bool(_MILEAGE_AFTER_RE.match(post.work, amount.end))
        after_word = word_before or word_after
        if not after_word and _NOT_MILEAGE_RE.search(before):
            continue
        score = (3.0 if word_before else 2.5 if word_after else 0.0) + (2.0 if amount.unit == "km" else 0.0)
        if score < 2:
            continue
        value = _mileage_value(amount, after_word)
        if not 0 <= value <= 2_000_000:
            continue
        if best is None or score > best[0]:
            best = (score, amount, value)
    return (best[1], best[2]) if best else None


def _bare_thousands(post: _Post, amounts: list[_Amount], market: _Amount | None, price: _Amount | None
                    ) -> tuple[tuple[_Amount, int] | None, _Amount | None]:
    """"160к, 1.55 млн" or "120т 260т": with no word for the mileage, a bare number in thousands
    before the price is the mileage (mileage before price is how one-line ads are written)."""
    for amount in amounts:
        if amount.scale != "k" or amount.unit is not None or amount.rub_abbrev or amount in (market, price):
            continue
        if not 1_000 <= amount.value <= 900_000 or _PRICE_LABEL_RE.search(_clause_before(post.work, amount.start)):
            continue
        rest = _find_price(post, amounts, exclude=(amount, market))
        if rest is not None and rest.start > amount.start:
            return (amount, amount.value), rest
    return None, price


# ---------------------------------------------------------------------------------------------
# Price and market price

_PRICE_LABEL_RE = re.compile(r"(?:цен[аеуы]|стоимост\w*|прошу|price)\s*[:\-–—=]?\s*(?:всего|лишь|всего\s+лишь)?\s*$")
_SELL_FOR_RE = re.compile(r"(?:отда[юм]|отдам|продам|продаю|продаем)\s+(?:\w+\s+){0,2}за\s*$")
_MARKET_RE = re.compile(
    r"(?:рыночн\w*\s+(?:цен\w*|стоимост\w*)|по\s+рынку|рыночн\w*|рынок)\s*"
    r"(?:[:\-–—~]|около|от|примерно|порядка)?\s*$"
)
_NOT_PRICE_CONTEXT_RE = re.compile(
    r"вложен|вложил|потрачен|налог|\bто\b|т\.о\.|ремонт|замен|резин|шин|диск|страхов|осаго|каско"
    r"|кредит|платеж|взнос|депозит|залог|торг|скидк|рыночн|по\s+рынку|рынок|\bдо\b|\bот\b|бюджет"
    r"|утильсбор|подорож|выросл|обслуживан|доплат|в\s+месяц|сутк|аренд|вычет|штраф|стартов|дешевле\s+на"
)
_NOT_PRICE_AFTER_RE = re.compile(
    r"\s*(?:л\.?\s?с|лс\b|км|%|мес|лет|год|мест|кл|дн|сут|час|шт|/|кг|мм|см|об\b|w\b|в\s+год|в\s+месяц)"
)
_AUCTION_RE = re.compile(r"аукцион|(?<![\w\-])лот\b|\bторги\b|\bставк")
_AUCTION_PRICE_RE = re.compile(r"(?:стартов\w*\s+цен\w*|начальн\w*\s+цен\w*|старт\w*)\s*[:\-–—]?\s*(?:от\s*)?$")
_OLD_PRICE_RE = re.compile(r"(?:\bбыло|старая\s+цена|вместо|старая)\s*[:\-–—]?\s*$")
_AFTER_PRICE_RE = re.compile(r"\s*(?:\(?торг|без\s+торга|руб|₽|р\b)")
_NEGOTIABLE_RE = re.compile(r"цена\s*[:\-–—]?\s*(?:договорн|по\s+договор)|договорн\w*\s+цен")


def _is_year_like(amount: _Amount) -> bool:
    return amount.scale is None and amount.unit is None and 1950 <= amount.number <= 2035


def _find_market_price(post: _Post, amounts: list[_Amount]) -> _Amount | None:
    for amount in amounts:
        if amount.unit == "km" or _is_year_like(amount):
            continue
        if _MARKET_RE.search(post.work[max(0, amount.start - 40):amount.start]):
            if 20_000 <= amount.value <= 300_000_000:
                return amount
    return None


def _find_price(post: _Post, amounts: list[_Amount], exclude: Iterable[_Amount | None]) -> _Amount | None:
    skipped = {a for a in exclude if a is not None}
    auction = bool(_AUCTION_RE.search(post.work))  # there the starting price is the price
    best: tuple[float, int, _Amount] | None = None
    for amount in amounts:
        if amount in skipped or amount.unit == "km" or _is_year_like(amount):
            continue
        clause = _clause_before(post.work, amount.start)
        if (amount.scale is None and amount.unit is None and amount.number == int(amount.number)
                and 30 <= amount.number < 20_000 and _PRICE_LABEL_RE.search(clause)):
            amount = replace(amount, scale="k")  # "цена 890, торг": a bare price is in thousands
        if not 20_000 <= amount.value <= 300_000_000:
            continue
        after = post.work[amount.end:amount.end + 14]
        if amount.unit is None and _NOT_PRICE_AFTER_RE.match(after):
            continue
        auction_start = auction and _AUCTION_PRICE_RE.search(clause)
        if (_NOT_PRICE_CONTEXT_RE.search(clause) and not auction_start) or _OLD_PRICE_RE.search(clause) \
                or post.work[max(0, amount.start - 2):amount.start] == "~~":
            continue  # a fee, a floor, or a crossed-out old price
        score = 0.5
        if _PRICE_LABEL_RE.search(clause) or auction_start:
            score += 3
        if _SELL_FOR_RE.search(clause):
            score += 2
        if amount.unit == "rub" or amount.scale == "m":
            score += 2
        elif amount.scale == "k":
            score += 1
        if _AFTER_PRICE_RE.match(after):
            score += 1
        if score < 1 and amount.value < 100_000:
            continue
        # Ties go to the later number: the price usually closes the ad.
        key = (score, amount.start)
        if best is None or key > best[:2]:
            best = (score, amount.start, amount)
    return best[2] if best else None


# ---------------------------------------------------------------------------------------------
# Year

_YEAR_RE = re.compile(r"(?<![\w.,\-])((?:19[5-9]|20[0-3])\d)(?!\d|[.,]\d)")
_YEAR_SUFFIX_RE = re.compile(r"\s?(?P<suffix>г\.?\s?в\.?|гв\b|год\s+выпуска|году\b|года?\b|г\b\.?)")
_YEAR_BAD_AFTER_RE = re.compile(r"\s*(?:р\b|руб|₽|км|тыс|к\b|т\.?\s?р|млн|\$|л\.?\s?с|кг|мм|см|/|\s?\d{3}\b)")
_YEAR_LABEL_RE = re.compile(r"(?:год\w*\s+выпуска|г\.?\s?в\.?|год)\s*[:\-–—]?\s*$")
_YEAR_NOT_BUILD_RE = re.compile(
    r"(?:(?<![\w\-])(?:в|до|с|от|по)|после|старше|моложе|младше|с\s+\d{4}\s+по|купил\w*|куплен\w*)\s*$"
)
_YEAR_OTHER_CONTEXT_RE = re.compile(
    r"гаранти|\bто\b|страхов|куплен|купил|резин|шин|аккумулятор|акб|ремонт|замен|сделан|производств"
)


def _find_year(post: _Post) -> int | None:
    best: tuple[float, int] | None = None
    for m in _YEAR_RE.finditer(post.work):
        after = post.work[m.end():m.end() + 16]
        if _YEAR_BAD_AFTER_RE.match(after) and not _YEAR_SUFFIX_RE.match(after):
            continue
        year = int(m.group(1))
        before = post.work[max(0, m.start() - 25):m.start()]
        score = 1.0 if m.start() < 120 else 0.0
        suffix = _YEAR_SUFFIX_RE.match(after)
        if suffix:
            word = suffix.group("suffix").replace(" ", "")
            if word.startswith(("г.в", "гв", "годвыпуска")):
                score += 3
            elif word.startswith("году"):
                score -= 4
            else:
                score += 2
        if _YEAR_LABEL_RE.search(before):
            score += 3
        if _YEAR_NOT_BUILD_RE.search(before):
            score -= 4
        if _YEAR_OTHER_CONTEXT_RE.search(_clause_before(post.work, m.start())):
            score -= 2
        if score < 0:
            continue
        if best is None or score > best[0]:
            best = (score, year)
    return best[1] if best else _short_year(post)


_SHORT_YEAR_RE = re.compile(r"(?<![\w.,\-])(\d{2})\s?(?:г\.?\s?в\b\.?|гв\b|год\s+выпуска|года?\b|г\b\.?)")
_SHORT_YEAR_NOT_RE = re.compile(r"(?:\bв|\bс|\bдо|\bот|\bна|\bза|\bуже|\bчерез|\bпосле|\bгарантия|\bгаранти\w*)\s*$")


def _short_year(post: _Post) -> int | None:
    """A year written short ("Солярис 17г", "14 года выпуска"): "00".."30" is this century, "80".."99"
    the last one; a count of years ("3 года") has one digit, and "в 19 году" is a purchase."""
    for m in _SHORT_YEAR_RE.finditer(post.work):
        short = int(m.group(1))
        if _SHORT_YEAR_NOT_RE.search(post.work[max(0, m.start() - 12):m.start()]):
            continue
        if short <= 30:
            return 2000 + short
        if short >= 80:
            return 1900 + short
    return None


# ---------------------------------------------------------------------------------------------
# Engine volume

_ENGINE_RE = re.compile(r"(?<![\w.,])([0-8])[.,](\d)(?!\d)")
_ENGINE_CC_RE = re.compile(r"(?<![\w.,])(\d{2,4})\s?(?:см3|см³|куб\.?\s?см|куб\w*|cc|cm3)(?!\w)")
_ENGINE_BAD_AFTER_RE = re.compile(
    r"\s?(?:млн|миллион|лям|кк|тыс|к\b|т\b|т\.|%|сек|с\b|м\b|мм|см\b|р\b|руб|₽|раз|бар|атм|кг|л\s*/"
    r"|л\s+на|литр\w*\s+на|/|мес|год|лет|час|-\s*\d|–\s*\d)"
)
_ENGINE_BAD_BEFORE_RE = re.compile(
    r"(?:расход\w*|\bза|экран\w*|диагонал\w*|верси\w*|андроид|android|ios|рейтинг\w*|оценк\w*|\bдо"
    r"|\bот|цен\w*|\bв)\s*[:~]?\s*$"
)
_ENGINE_GOOD_AFTER_RE = re.compile(
    r"\s?(?:л\b|l\b|литр|t\b|турбо|tsi|tfsi|tdi|mpi|gdi|crdi|dci|hdi|d\b|i\b|v\d|\d{1,2}v\b|\d{1,2}\s?кл"
    r"|бенз|диз|атмо|гибрид|at\b|mt\b|ат\b|мт\b|акпп|мкпп|автомат|механ|мех\b|вариатор|робот|cvt|dsg"
    r"|dct|powershift|s\s?tronic|tiptronic|4wd|awd|quattro|\(|\s*\d{2,3}\s*л\.?\s?с|s\b)"
)
_ENGINE_GOOD_BEFORE_RE = re.compile(r"(?:двигател\w*|мотор\w*|объ[её]м\w*|двс|v6|v8|d\d)\s*[:\-–—]?\s*$")


def _find_engine_volume(post: _Post) -> str | None:
    best: tuple[float, str] | None = None
    for m in _ENGINE_RE.finditer(post.work):
        after = post.work[m.end():m.end() + 14]
        before = post.work[max(0, m.start() - 16):m.start()]
        if _ENGINE_BAD_AFTER_RE.match(after) or _ENGINE_BAD_BEFORE_RE.search(before):
            continue
        volume = float(f"{m.group(1)}.{m.group(2)}")
        if not 0.6 <= volume <= 8.0:
            continue
        score = 0.0
        if _ENGINE_GOOD_AFTER_RE.match(after):
            score += 2
        if _ENGINE_GOOD_BEFORE_RE.search(before):
            score += 2
        if best is None or score > best[0]:
            best = (score, f"{volume:.1f}")
    if best is None:
        cc = _ENGINE_CC_RE.search(post.work)
        if cc and 49 <= int(cc.group(1)) <= 8000:  # motorcycles from 50 cc
            return f"{int(cc.group(1)) / 1000:.1f}"
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------
# Gearbox, fuel, owners, autoteka

_AFTER_VOLUME_OR_KPP = r"(?:(?<=\d[.,]\d)\s?|(?<=\d[.,]\d\s)|(?<=кпп)\s?[:\-–]?\s?|(?<=кпп\s)[:\-–]?\s?)"
# Gearbox names with an optional gear count glued on ("8АКПП", "АКПП6", "AT8", "7DCT", "DSG7").
_NB = r"(?<![a-zа-я])\d{0,2}-?"  # not inside a word; a gear count may stand before
_NE = r"-?\d{0,2}(?![a-zа-я])"   # ... or after
_TRANSMISSION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("automatic", re.compile(
        _NB + r"(?:акпп|at|ат)" + _NE + r"(?![.\-]?\s?(?:км|р\b))"
        r"|\bавтомат(?:е|ом|а)?\b|автоматическ\w*\s+(?:кпп|коробк\w*|трансмисс\w*)|\b\d{1,2}-?ст\w*\.?\s+автомат"
        r"|\btiptronic\w*|\b\d{0,2}g-?tronic\b|\bsteptronic\b|\bgeartronic\b|\bгидромех\w*|\bгидроавтомат\w*"
        r"|\baisin\b|\bайсин\b|\bzf\b|\b\d{1,2}hp\b|\bтиптроник\w*")),
    ("manual", re.compile(
        _NB + r"(?:мкпп|mt|мт)" + _NE + r"|\bмеханик[аеиу]\b|\bна\s+механике\b|\bмех\b\.?"
        r"|\bмеханическ\w*\s+(?:кпп|коробк\w*)|\bступк\w*|\bручк[аеу]\b")),
    ("robot", re.compile(
        r"\bробот\w*|" + _NB + r"(?:dsg|dct|amt|амт|ркпп|edc)" + _NE + r"|\bpowershift\b|\bs[\s-]?tronic\b"
        r"|\bpdk\b|\bdualogic\b|\beasytronic\b|\bмультимод\w*")),
    ("variator", re.compile(
        r"\bвариатор\w*|" + _NB + r"(?:cvt|ivt)" + _NE + r"|\bmultitronic\b|\bмультитроник\w*|\bx-?tronic\b"
        r"|\blineartronic\b|\bjatco\b|\bджатко\b")),
)


def _find_transmission(post: _Post) -> str | None:
    first: tuple[int, str] | None = None
    for kind, pattern in _TRANSMISSION_PATTERNS:
        m = pattern.search(post.work)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), kind)
    return first[1] if first else None


_FUEL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gas", re.compile(
        r"\bгбо\b|\bна\s+газу\b|\bгаз\s*[/\-+]\s*бензин|\bбензин\s*[/\-+]\s*газ\b|\bметан\w*|\bпропан\w*"
        r"|\blpg\b|\bcng\b")),
    ("hybrid", re.compile(r"\bгибрид\w*|\bhybrid\b|\bphev\b|\be-?power\b|\bdm-?[ip]\b|\bplug-?in\b|\bплагин\w*")),
    ("electric", re.compile(
        r"\bэлектро\b|\bэлектромобил\w*|\bэлектрокар\w*|\bэлектрическ\w*\s+(?:авто|машин\w*|двигател\w*)"
        r"|\bev\b")),
    ("diesel", re.compile(
        r"\bдизел\w*|\bдизель\w*|\btdi\b|\bcrdi\b|\bdci\b|\bhdi\b|\btdci\b|\bv?cdi\b|\b[st]dv\d\b|\bd-?4d\b"
        r"|\bmultijet\b|\bjtd\w*|\bbluehdi\b|\bbluetec\b|\bсоляр(?:а|ой|е|ка|ке)\b|\bd[3-5]\b|\d[.,]\dd\b"
        r"|(?<![\w.,])\d{3}d\b")),
    ("petrol", re.compile(r"\bбензин\w*|\bбенз\b|\btsi\b|\btfsi\b|\bаи-?9[25]\b")),
)


def _find_fuel(post: _Post) -> str | None:
    for kind, pattern in _FUEL_PATTERNS:  # ordered: a gas kit or a hybrid beats "бензин"
        if pattern.search(post.work):
            return kind
    return None


_COUNT_WORDS = {
    "один": 1, "одна": 1, "одного": 1, "первый": 1, "первого": 1,
    "два": 2, "двое": 2, "двух": 2, "второй": 2, "второго": 2,
    "три": 3, "трое": 3, "трех": 3, "третий": 3, "третьего": 3,
    "четыре": 4, "четверо": 4, "четвертый": 4, "пять": 5, "пятеро": 5,
}
_COUNT = r"(\d{1,2}|один|одна|два|двое|три|трое|четыре|четверо|пять|пятеро)"
_OWNER_NOUN = r"(?:владел\w*|хозя\w*|хоз\b\.?|собственник\w*|вл\b\.?)"
_OWNERS_PATTERNS = (
    re.compile(r"(?<![\w.,])" + _COUNT + r"\s?(?:-?х\s+|-?ух\s+)?" + _OWNER_NOUN),
    re.compile(r"\b(?:владел\w*|хозя\w*|хозяев|собственник\w*)(?:\s+по\s+птс)?\s*[:\-–—]?\s*" + _COUNT
               + r"(?!\w|[.,]\d)"),
    re.compile(r"\b(первый|второй|третий|четвертый)\s+(?:владел\w*|хозя\w*|собственник\w*)"),
    re.compile(r"\bот\s+(первого)\s+(?:владел\w*|хозя\w*)"),
)


def _find_owners(post: _Post) -> int | None:
    first: tuple[int, int] | None = None
    for pattern in _OWNERS_PATTERNS:
        for m in pattern.finditer(post.work):
            word = m.group(1)
            count = int(word) if word.isdigit() else _COUNT_WORDS.get(word)
            if count is None or not 0 < count <= 20:
                continue
            if first is None or m.start() < first[0]:
                first = (m.start(), count)
            break
    return first[1] if first else None


_ACCIDENT_RE = re.compile(
    r"\bбыл[оаи]?\s+(?:\w+\s+){0,2}дтп\b|\bдтп\s+(?:было|были|был)\b|\bесть\s+(?:\w+\s+)?дтп\b"
    r"|\bпосле\s+дтп\b|(?<!не\s)\bучаствовал\w*\s+в\s+(?:\w+\s+)?дтп\b|(?<!не\s)(?<!не\s\s)\bбит(?:ая|ый|а|ое)\b"
    r"|автотек\w*\s*[:\-–—]?\s*(?:красн\w*|с\s+дтп|есть\s+дтп)|\bаварийн\w*"
)
_CLEAN_RE = re.compile(
    r"автотек\w*\s*[:\-–—]?\s*(?:зелен\w*|чист\w*|без\s+дтп|идеальн\w*|ок\b)|\bзелен\w*\s+автотек\w*"
    r"|\bчист\w*\s+автотек\w*|\bбез\s+дтп\b|\bдтп\s+не\s+было\b|\bне\s+было\s+дтп\b|\bдтп\s+нет\b"
    r"|\bне\s+участвовал\w*\s+в\s+дтп"
)


def _find_autoteka(post: _Post) -> str:
    if _ACCIDENT_RE.search(post.work):
        return "has_accidents"
    if _CLEAN_RE.search(post.work):
        return "green"
    return "unknown"


_BECAUSE = r"(?:из-за|в\s+связи\s+с|так\s+как|т\.\s?к\.|потому\s+что)"
_JUSTIFICATION_RES = (
    re.compile(r"причин\w*\s+продажи\s*[:\-–—]?\s*([^.\n!]+)"),
    # "рыночная цена 3.1 млн — отдаю быстро из-за переезда", "отдам срочно, так как уезжаю"
    re.compile(r"(?:рыночн|отда[юм]|продаю|продам)[^.\n!]*?(?:дешевле|дешево|недорого|быстро|срочно|ниже)"
               r"[^.\n!]*?(" + _BECAUSE + r"\s+[^.,\n!]+)"),
    re.compile(r"(?:дешевле|ниже\s+рынк\w*|ниже\s+рыночн\w*)[^.\n!]*?((?:из-за|в\s+связи\s+с|так\s+как|т\.\s?к\."
               r"|потому\s+что)\s+[^.,\n!]+)"),
    re.compile(r"((?:из-за|в\s+связи\s+с)\s+[^.,\n!]+)[^.\n!]*?(?:дешевле|ниже\s+рынк\w*|ниже\s+рыночн\w*)"),
)


def _find_price_justification(post: _Post) -> str | None:
    for pattern in _JUSTIFICATION_RES:
        m = pattern.search(post.low)
        if m:
            return post.original[m.start(1):m.end(1)].strip(" ,;:-–—") or None
    return None


# ---------------------------------------------------------------------------------------------
# Brand and model

_LETTER_DIGIT_RE = re.compile(r"(?<=[^\W\d])(?=\d)|(?<=\d)(?=[^\W\d])")


def _alias_pattern(alias: str, declines: bool) -> str:
    """Regex for one alias: flexible spaces/hyphens, and Russian case endings for Cyrillic words."""
    alias = alias.lower().replace("ё", "е")
    parts = [re.escape(p) for p in re.split(r"[\s\-]+", alias) if p]
    body = r"[\s\-]*".join(parts)
    body = _LETTER_DIGIT_RE.sub(r"[\\s\\-]?", body) if re.search(r"\d", alias) else body
    if declines and re.fullmatch(r"[а-я\s\-]+", alias):
        if alias.endswith(("а", "я")):
            body = body[:-1] + r"(?:а|ы|е|у|ой|и|я|ю)"
        elif alias[-1] not in "аеиоуыэюяь":
            body += r"(?:а|у|е|ом|ы|ов)?"
    return r"(?<![\w\-])" + body + r"(?![\w])"


def _compile_aliases(aliases: Iterable[str], declines: bool = True) -> re.Pattern[str]:
    ordered = sorted(set(aliases), key=len, reverse=True)
    return re.compile("|".join(_alias_pattern(a, declines) for a in ordered))


_BRAND_RES: dict[str, re.Pattern[str]] = {
    make.name: _compile_aliases(make.aliases) for make in catalogue().makes if make.aliases
}
# Make names that are also common words or models ("газ", "солярис"): a make only before its model.
_WEAK_BRAND_RES: dict[str, re.Pattern[str]] = {
    make.name: _compile_aliases(make.weak_aliases) for make in catalogue().makes if make.weak_aliases
}
# Names that appear with digits and letters, matched right after the brand ("E 220d", "3 серии").
_MODEL_SPECIAL_RES: dict[str, re.Pattern[str]] = {
    "Mercedes-Benz": re.compile(
        r"(?<![\w\-])(?:[abcegsv]|[асе])\s?-?\s?(?:класс\w*|class|klasse|\d{3}[a-z]{0,4}(?![\w]))"),
    "BMW": re.compile(r"(?<![\w\-])(?:[1-8]\s?-?\s?(?:серии|серия|series|er)|[1-8]\d{2}[a-z]{1,2})(?![\w])"),
    "Lexus": re.compile(r"(?<![\w\-])(?:rx|nx|lx|es|gx|is|ls|ux)\s?\d{3}[a-z]{0,2}(?![\w])"),
}


def _strong_alias(alias: str) -> bool:
    """Names a car on its own: not a weak alias in the catalogue, not a bare number, at least 3 letters."""
    return len(alias) >= 3 and not re.fullmatch(r"[\d\s\-]+", alias)


def _alias_owners() -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for make in catalogue().makes:
        for model in make.models:
            for alias in (*model.aliases, *model.weak_aliases):
                owners.setdefault(_squeezed(alias), set()).add(make.name)
    return owners


def _squeezed(alias: str) -> str:
    """An alias without its spaces and hyphens ("rav 4" and "рав-4" are "rav4" and "рав4")."""
    return re.sub(r"[\s\-]+", "", alias)


_ALIAS_OWNERS = _alias_owners()


def _model_res(brand: str, weak: bool) -> re.Pattern[str] | None:
    make = catalogue().make(brand)
    if make is None:
        return None
    aliases = [alias for model in make.models
               for alias in (*model.aliases, *(model.weak_aliases if weak else ()))
               # brandless, a name must be strong and belong to one make only ("c5": Citroen, Omoda)
               if weak or (_strong_alias(alias) and len(_ALIAS_OWNERS.get(_squeezed(alias), ())) == 1)]
    return _compile_aliases(aliases) if aliases else None


_MODEL_RES_ALL: dict[str, re.Pattern[str] | None] = {b: _model_res(b, weak=True) for b in MODELS}
_MODEL_RES_STRONG: dict[str, re.Pattern[str] | None] = {b: _model_res(b, weak=False) for b in MODELS}
_STRONG_MODEL_BRAND_ORDER = ("Lada", *[b for b in MODELS if b != "Lada"])
_NIVA_RE = re.compile(r"(?<![\w\-])нив[аеуы](?![\w])")
_GENERIC_MODEL_RE = re.compile(r"\s*[-–]?\s*([a-z][a-z0-9\-]{1,15}|\d{3,4}(?![\d.,]))(?![\w])")


@cache
def _model_alias_res(brand: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    # One pattern per alias, compiled on first use: only the brand of the post at hand needs them.
    return tuple(
        (canonical, re.compile(_alias_pattern(alias, declines=True)))
        for canonical, aliases in MODELS.get(brand, {}).items()
        for alias in sorted((canonical.lower(), *aliases), key=len, reverse=True)
    )


def _catalogue_model(brand: str, raw: str) -> str:
    """Canonical model for a matched alias, including declined forms ("Весту" -> "Vesta")."""
    low = _lower_same_length(raw).strip()
    for canonical, pattern in _model_alias_res(brand):
        if pattern.fullmatch(low):
            return canonical
    return canonical_model(brand, raw) or raw


def _brand_hits(work: str) -> tuple[int, int, str] | None:
    """The first make named in the text: a strong alias, or a weak one followed by one of its models."""
    best: tuple[int, int, str] | None = None
    for brand, pattern in _BRAND_RES.items():
        m = pattern.search(work)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), m.end(), brand)
    for brand, pattern in _WEAK_BRAND_RES.items():
        models = _MODEL_RES_ALL.get(brand)
        for m in pattern.finditer(work, 0, best[0] if best else len(work)):
            following = models.match(work, m.end() + len(work[m.end():]) - len(work[m.end():].lstrip(" -"))) \
                if models else None
            if following:
                best = (m.start(), m.end(), brand)
                break
    return best


_LOOKALIKE_TO_LATIN = str.maketrans("авекмнорстух", "abekmhopctyx")
_MIXED_TOKEN_RE = re.compile(r"[a-zа-я0-9]*(?:[a-z][а-я]|[а-я][a-z]|\d[а-я]|[а-я]\d)[a-zа-я0-9]*")


def _latinised(work: str) -> str:
    """Tokens that mix scripts or glue digits to Cyrillic lookalikes ("Х60", "Аccent") in Latin
    letters; same length, so offsets hold."""
    return _MIXED_TOKEN_RE.sub(lambda m: m.group(0).translate(_LOOKALIKE_TO_LATIN)
                               if re.fullmatch(r"[a-z0-9авекмнорстух]+", m.group(0)) else m.group(0), work)


def _find_brand_model(post: _Post) -> tuple[str | None, str | None]:
    found = _brand_model_in(post.work, post)
    if found[1] is None:
        latin = _latinised(post.work)
        if latin != post.work:
            again = _brand_model_in(latin, post)
            if again[1] is not None and found[0] in (None, again[0]):
                return again
    return found


def _brand_model_in(work: str, post: _Post) -> tuple[str | None, str | None]:
    brand_hit = _brand_hits(work)

    if brand_hit is None:
        # No brand: a distinctive model name implies it ("Камри" -> Toyota, "Пассат" -> Volkswagen).
        hit: tuple[int, int, str, str] | None = None
        for brand in _STRONG_MODEL_BRAND_ORDER:
            pattern = _MODEL_RES_STRONG.get(brand)
            m = pattern.search(work) if pattern else None
            if m and (hit is None or m.start() < hit[0] or (m.start() == hit[0] and m.end() > hit[1])):
                hit = (m.start(), m.end(), brand, m.group(0))
        niva = _NIVA_RE.search(work)
        if niva and (hit is None or niva.start() < hit[0]):
            hit = (niva.start(), niva.end(), "Lada", "Niva")
        if hit is None:
            return None, None
        return hit[2], _catalogue_model(hit[2], hit[3])

    _start, end, brand = brand_hit
    brand = canonical_brand(brand) or brand
    near = work[end:end + 30]
    candidates: list[tuple[int, int, str]] = []
    for pattern in (_MODEL_RES_ALL.get(brand), _MODEL_SPECIAL_RES.get(brand)):
        if pattern is None:
            continue
        m = pattern.search(near)
        if m:
            candidates.append((m.start(), -len(m.group(0)), m.group(0)))
    if candidates:
        return brand, _catalogue_model(brand, min(candidates)[2])
    pattern = _MODEL_RES_STRONG.get(brand)
    m = pattern.search(work) if pattern else None
    if m:
        return brand, _catalogue_model(brand, m.group(0))
    # Not in the catalogue: the Latin word or the number right after the brand ("ВАЗ 2114").
    generic = _GENERIC_MODEL_RE.match(work, end)
    if generic:
        word = generic.group(1)
        if not (word.isdigit() and 1950 <= int(word) <= 2035):  # "Toyota 2015" has no model
            return brand, _catalogue_model(brand, post.original[generic.start(1):generic.end(1)])
    return brand, None


# ---------------------------------------------------------------------------------------------
# City

# Cities that are also common words or first names ("Находка", "Ковров", "Октябрьский", "Владимир",
# "Артём") are left out: they are still found after an explicit marker ("г. Находка", "Город: Ковров").
_CITIES = (
    "Москва", "Санкт-Петербург", "Новосибирск", "Екатеринбург", "Казань", "Нижний Новгород", "Челябинск",
    "Красноярск", "Самара", "Уфа", "Ростов-на-Дону", "Омск", "Краснодар", "Воронеж", "Пермь", "Волгоград",
    "Саратов", "Тюмень", "Тольятти", "Барнаул", "Ижевск", "Махачкала", "Хабаровск", "Ульяновск", "Иркутск",
    "Владивосток", "Ярославль", "Севастополь", "Ставрополь", "Томск", "Кемерово", "Набережные Челны",
    "Оренбург", "Новокузнецк", "Балашиха", "Рязань", "Чебоксары", "Калининград", "Пенза", "Липецк", "Киров",
    "Астрахань", "Тула", "Сочи", "Улан-Удэ", "Курск", "Магнитогорск", "Тверь", "Иваново", "Брянск",
    "Белгород", "Сургут", "Чита", "Архангельск", "Нижний Тагил", "Симферополь", "Калуга", "Смоленск",
    "Волжский", "Якутск", "Саранск", "Череповец", "Курган", "Вологда", "Подольск", "Владикавказ",
    "Мурманск", "Тамбов", "Стерлитамак", "Петрозаводск", "Кострома", "Нижневартовск", "Новороссийск",
    "Йошкар-Ола", "Химки", "Таганрог", "Сыктывкар", "Нальчик", "Братск", "Дзержинск", "Нижнекамск", "Орск",
    "Энгельс", "Ангарск", "Благовещенск", "Старый Оскол", "Великий Новгород", "Псков", "Люберцы", "Мытищи",
    "Бийск", "Прокопьевск", "Южно-Сахалинск", "Балаково", "Армавир", "Рыбинск", "Северодвинск",
    "Петропавловск-Камчатский", "Абакан", "Норильск", "Сызрань", "Волгодонск", "Уссурийск",
    "Каменск-Уральский", "Новочеркасск", "Златоуст", "Электросталь", "Альметьевск", "Салават", "Миасс",
    "Керчь", "Копейск", "Пятигорск", "Рубцовск", "Березники", "Коломна", "Майкоп", "Одинцово",
    "Кисловодск", "Нефтекамск", "Нефтеюганск", "Батайск", "Новочебоксарск", "Серпухов",
    "Дербент", "Черкесск", "Первоуральск", "Обнинск", "Кызыл", "Новый Уренгой", "Невинномысск",
    "Димитровград", "Ессентуки", "Камышин", "Муром", "Ноябрьск", "Евпатория", "Анапа", "Геленджик",
    "Ейск", "Тобольск", "Ханты-Мансийск", "Елабуга", "Зеленодольск", "Туймазы", "Белорецк",
    # the regional centres and cities over 100 000 missing above
    "Орёл", "Грозный", "Элиста", "Магадан", "Биробиджан", "Анадырь", "Салехард", "Нарьян-Мар", "Горно-Алтайск",
    "Магас", "Шахты", "Назрань", "Хасавюрт", "Каспийск", "Королёв", "Красногорск", "Домодедово", "Щёлково",
    "Раменское", "Жуковский", "Пушкино", "Сергиев Посад", "Ногинск", "Долгопрудный", "Реутов", "Новомосковск",
    "Ачинск", "Бердск", "Донецк", "Луганск", "Ялта", "Феодосия", "Новошахтинск", "Когалым", "Воткинск",
    "Соликамск", "Сарапул", "Лениногорск",
)
_CITY_ABBREVIATIONS = {
    "Москва": r"мск|moscow",
    "Санкт-Петербург": r"спб|питер\w{0,3}|петербург\w{0,3}",
    "Екатеринбург": r"екб|е-?бург\w{0,3}",
    "Новосибирск": r"нск|новосиб\w{0,3}",
    "Нижний Новгород": r"н\.\s?новгород\w{0,3}|нижн\w{0,3}\s+новгород\w{0,3}",
    "Краснодар": r"крд",
    "Челябинск": r"челяб[аеуи]",
    "Ростов-на-Дону": r"ростов\w{0,3}",
    "Орёл": r"орл[еау]",
}


def _city_pattern(name: str) -> str:
    low = name.lower().replace("ё", "е")
    words = re.split(r"[\s\-]+", low)
    if len(words) > 1:
        pieces = [w if w in ("на", "дону") else w[:-1] + r"\w{0,3}" if len(w) > 4 else w for w in words]
        return r"[\s\-]+".join(pieces)
    if low.endswith("а"):
        return low[:-1] + r"(?:а|ы|е|у|ой)"
    if low.endswith("ь"):
        return low[:-1] + r"(?:ь|и|ю|я|е|ем)"
    if low.endswith(("ий", "ый")):
        return low[:-2] + r"(?:ий|ый|ом|ого)"
    if low.endswith(("ое", "ее")):
        return low[:-2] + r"(?:ое|ом|ого|ее|ем)"
    if low.endswith("ы"):
        return low[:-1] + r"(?:ы|ах|ам)"
    if low.endswith("о"):
        return low[:-1] + r"(?:о|е)"
    if low[-1] in "еиоуэ":
        return re.escape(low)
    return low + r"(?:а|е|у|ом)?"


_CITY_RES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(r"(?<![\w\-])(?:" + _city_pattern(name)
                      + ("|" + _CITY_ABBREVIATIONS[name] if name in _CITY_ABBREVIATIONS else "")
                      + r")(?![\w\-])"))
    for name in _CITIES
)
_CITY_MARKER_RE = re.compile(
    r"(?:(?<!\d)(?<!\d\s)\bг\.\s?|\b[Гг]ород\s*[:\-–—]?\s*|📍\ufe0f?\s*|🏙\ufe0f?\s*|🌆\s*)"
    r"([А-ЯЁ][а-яё]+(?:-[А-ЯЁа-яё][а-яё]+)*(?: [А-ЯЁ][а-яё]+)?)"
)


def _gazetteer_city(text: str) -> str | None:
    low = _lower_same_length(text)
    for name, pattern in _CITY_RES:
        m = pattern.match(low)
        if m and m.end() == len(low):
            return name
    return None


def _find_city(post: _Post) -> str | None:
    for m in _CITY_MARKER_RE.finditer(post.original):
        captured = m.group(1)
        first_word = captured.split(" ")[0]
        return _gazetteer_city(captured) or _gazetteer_city(first_word) or first_word
    last: tuple[int, str] | None = None
    for name, pattern in _CITY_RES:
        for m in pattern.finditer(post.work):
            if last is None or m.start() > last[0]:
                last = (m.start(), name)
    return last[1] if last else None


# ---------------------------------------------------------------------------------------------
# Equipment and condition phrases (the summary is built only from these)

_EQUIPMENT_RE = re.compile(
    r"климат|кондиционер|\bкож|алькантар|подогрев|обогрев|вентиляц|массаж|памят\w*\s+сид|камер|парктроник"
    r"|парковк|датчик|круиз|\bacc\b|ксенон|\bled\b|\bлед\b|матри|мультибим|\bфар|люк|панорам|навигац"
    r"|мультимеди|магнитол|музык|акустик|\bbose\b|\bjbl\b|burmester|harman|mark\s+levinson|carplay"
    r"|android\s+auto|сигнализац|сигналк|автозапуск|webasto|вебасто|фаркоп|шумк|тонировк|лит\w+\s+диск"
    r"|диск|резин|комплектац|максималк|пакет|\bamg\b|r-line|m-?пакет|m\s?sport|электропривод|бесключев"
    r"|keyless|комфорт-доступ|проекц|виртуальн|приборк|пневм|спортхроно|лебедк|шноркель|багажник|защит"
    r"|мультирул|\bэсп\b|\babs\b|подушк|\d\s+мест|руль|привод|\b4wd\b|\bawd\b|quattro|4matic|xdrive"
    r"|автопилот|салон|\bgps\b|bluetooth|\busb\b|экран|дисплей|обзор|рейлинг|чехл|коврик|стекл|зеркал"
    r"|\bмуз|сабвуфер|усилител|регистратор|комфорт|\bпакет"
)
_CONDITION_RE = re.compile(
    r"состояни|не\s+бит|не\s+краш|без\s+вложени|вложени\w*\s+не\s+требу|не\s+требует|гнил|ржав|скол"
    r"|царапин|вмятин|косяк|сервисн|обслужива|регламент|чек[иа]\b|дилер|хранил|гараж|на\s+ходу|ездит"
    r"|езжу|работает|без\s+нарекани|в\s+норме|перебра|замен[еа]н|\bнов(?:ая|ый|ые|ое|ую)\b|чист\w*"
    r"|кузов|порог|свар|варен|крашен|такси|свеж|ухожен|идеал|отличн|хорош|гаранти|родн\w+\s+краск"
    r"|окрас|не\s+гнил|вложений|сколы|дефект|нарекан|проблем|течей|не\s+течет|сделано\s+все"
)
_SUMMARY_EXCLUDE_RE = re.compile(
    r"пробег|владел|хозя|\bхоз\b|собственник|птс|автотек|дтп|\bцен|торг|обмен|продам|продаю|прода[её]тся"
    r"|продажа|в\s+продаже|срочн|@|https?:|t\.me|\bтел\b|телефон|звон|пиш|\bлс\b|личк|whatsapp|ватсап"
    r"|вотсап|телег|viber|вайбер|налог|кредит|trade-in|трейд|рассрочк|\bвин\b|\bvin\b|объявлени"
    r"|л\.\s?с|#|автосалон|дилерск\w+\s+центр|\bул\.|улиц|\bадрес|\bг\.\s"
)
# A label on its own ("Привод: полный" splits into "Привод" and "полный") says nothing.
_BARE_LABELS = frozenset({
    "комплектация", "опции", "состояние", "привод", "салон", "кузов", "оснащение", "доп", "допы",
    "дополнительно", "кпп", "коробка", "двигатель", "мотор", "цвет",
})
_SUMMARY_SPLIT_RE = re.compile(r"[\n;!?•|:]|(?<!\d)[.,](?!\d)|(?<=\d)[.,](?!\d)|(?<!\d)[.,](?=\d)|[()]")
_EMOJI_NOISE_RE = re.compile(r"[^\w\s\-/+.,«»\"'%№]")


def _spec_patterns() -> list[re.Pattern[str]]:
    """Patterns of things the template shows elsewhere and the summary must leave out."""
    patterns = [pattern for _kind, pattern in _TRANSMISSION_PATTERNS]
    patterns += [pattern for _kind, pattern in _FUEL_PATTERNS]
    patterns += [re.compile(r"(?<![\w.,])[0-8][.,]\d(?!\d)"), _YEAR_RE]
    patterns += list(_BRAND_RES.values())
    patterns += [p for p in _MODEL_RES_STRONG.values() if p is not None]
    patterns += [pattern for _name, pattern in _CITY_RES]
    return patterns


# One alternation instead of ~240 separate searches per phrase (all patterns share the same flags).
_SPEC_RE = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in _spec_patterns()))


def _is_spec_or_contact(phrase_low: str) -> bool:
    if _SUMMARY_EXCLUDE_RE.search(phrase_low):
        return True
    for amount in _amounts(_prepare(phrase_low)):
        if amount.scale or amount.unit or amount.value >= 1000:
            return True
    return _SPEC_RE.search(phrase_low) is not None


def _clean_phrase(raw: str) -> str:
    text = _EMOJI_NOISE_RE.sub(" ", raw)
    text = " ".join(text.split()).strip(" -–—,.+/")
    if not text:
        return ""
    first = text.split(" ")[0]
    # Lower-case "Кожаный салон" -> "кожаный салон", but keep acronyms and names ("JBL", "CarPlay").
    if len(first) > 1 and first[0].isupper() and first[1:].islower() and re.match(r"[А-ЯЁ]", first):
        text = text[0].lower() + text[1:]
    return text


def _phrases(post: _Post) -> tuple[list[str], list[str]]:
    equipment: list[str] = []
    condition: list[str] = []
    seen: set[str] = set()
    for raw in _SUMMARY_SPLIT_RE.split(post.original):
        low = _lower_same_length(raw)
        if not raw.strip() or _is_spec_or_contact(low):
            continue
        is_condition = bool(_CONDITION_RE.search(low))
        is_equipment = bool(_EQUIPMENT_RE.search(low))
        if not (is_condition or is_equipment):
            continue
        phrase = _clean_phrase(raw)
        key = phrase.lower()
        if len(phrase) < 3 or key in seen or key in _BARE_LABELS:
            continue
        seen.add(key)
        (condition if is_condition else equipment).append(phrase)
    return equipment, condition


def _cap_words(items: list[str], budget: int) -> tuple[list[str], int]:
    kept: list[str] = []
    for item in items:
        words = len(item.split())
        if words > budget:
            break
        kept.append(item)
        budget -= words
    return kept, budget


# ---------------------------------------------------------------------------------------------
# Classification

_SALE_VERB_RE = re.compile(r"\bпрода(?:м|ю|ем|ется|тся)\b|\bпродажа\b|\bв\s+продаже\b|\bотда[мю]\b")
_PARTS_NOUN_RE = re.compile(
    r"резин|шин[ауы]?\b|диск|колес|двигател|мотор|\bкпп|акпп|коробк|магнитол|\bфар[аыу]?\b|бампер|капот"
    r"|двер|аккумулятор|сиден|\bруль|подвеск|турбин|генератор|стартер|багажник|фаркоп|гараж|номер|запчаст"
    r"|комплект|зеркал|стекл|чехл|коврик|регистратор|навигатор|автокресл|покрышк|кузов\b|запаск"
)
_CAR_NOUN_RE = re.compile(r"\bавто\b|автомобил|машин|\bтачк")
_BUYER_RE = re.compile(
    r"\bкуплю\b|\bищу\b|\bищем\b|\bкупим\b|\bприобрету\b|\bрассмотрю\s+(?:варианты|предложени)"
    r"|\bнужна\s+машина|\bнужен\s+(?:авто|автомобиль)|\bпредлагайте\b"
)
_QUESTION_RE = re.compile(
    r"посоветуйте|подскажите|что\s+лучше|что\s+выбрать|кто\s+знает|кто\s+на\s+ч[её]м|\bу\s+кого\b"
    r"|стоит\s+ли|как\s+думаете|что\s+посоветуете|\bнарод\b|ваше\s+мнение"
)
_SERVICE_RE = re.compile(
    r"выкуп|шиномонтаж|автосервис|техцентр|автоподбор|подбор\s+авто|эвакуатор|\bаренд|\bсдам\b|\bсдаю\b"
    r"|прокат|инструктор|автошкол|обучени\w*\s+вождени|розыгрыш|автокосметик|детейлинг|химчистк|полировк"
    r"|правила\s+канала|реклама\s+[—-]|\bремонт\s+(?:акпп|двс|"
    r"двигател|ходов|кузов)|диагностик|\bсто\b"
)
# A dealer posting one specific car is still a sale ad; a dealer advert without a car is not, but it
# fails for want of any car evidence, so these only tip the balance.
_WEAK_SERVICE_RE = re.compile(r"доставк|рассрочк|кредит\s+от|trade-in|трейд-ин|скидк|\bакци|автосалон")
# Import to order: a service advert, unless the post describes one specific car (then it is a sale).
_IMPORT_RE = re.compile(r"под\s+заказ|привез[её]м|привозим|пригоним|пригоняем|доставк\w*\s+(?:авто|из)"
                        r"|из\s+(?:кореи|китая|японии|европы|оаэ|германии|сша)")
# The car is already sold: a notice, not an offer.
_SOLD_RE = re.compile(
    r"\bпродан[аоы]?\b|\bпродал[аи]?\b|уехал\w*\s+(?:к|в)\s|наш[её]л\w*\s+(?:\w+\s+)?(?:хозя|владел)"
    r"|сделка\s+состоял|продажа\s+завершен|снят\w*\s+с\s+продаж|не\s*актуальн|уже\s+не\s+прода|передан\w*\s+(?:\w+\s+)?владел")
# The owner asks what to ask for the car: a question, not an offer.
_PRICE_QUESTION_RE = re.compile(
    r"сколько\s+(?:\w+\s+){0,2}(?:стоит|просить|дадут|выручить|может\s+стоить|поставить)|\bоцените\b"
    r"|какую\s+цену|за\s+сколько\s+(?:\w+\s+){0,2}продать|помогите\s+оценить|не\s+знаю,?\s+(?:какую|сколько)")
_PARTS_RE = re.compile(r"запчаст|\bразбор\b|\bразборк|на\s+разбор|\bб/у\s+запчаст")
_NEWS_RE = re.compile(
    r"сообща|по\s+данным|эксперт|утильсбор|запустил|стартов\w*\s+цен|продажи\s+начнутся|подорожа|подешевел"
    r"|выросл|снизил|\bобзор|сравнили|читайте|новост|минпромторг|госдум|законопроект|гибдд|дтп\s+на\b"
    r"|столкнул|пострада|объезжайте|пробк[аи]\b|автостат|аналитик|новинк|официальн\w*\s+дилер"
    r"|начал[аио]?\s+продаж|цен[аыу]?\s+от\s+\d|цены\s+стартуют|повысил\w*\s+цен|рейтинг"
)


@dataclass(frozen=True)
class _Signals:
    sale_verb: bool
    parts_sale: bool
    identity: bool
    year: bool
    price: bool
    mileage: bool
    specs: int
    buyer: bool
    question: bool
    question_mark: bool
    service: bool
    weak_service: bool
    parts: bool
    news: bool
    import_order: bool
    sold: bool
    price_question: bool


def _parts_sale(post: _Post) -> bool:
    """A sale verb whose object is a part ("Продам комплект резины", "Продаю двигатель от Гранты")."""
    for m in _SALE_VERB_RE.finditer(post.work):
        following = re.findall(r"[\w/]+", post.work[m.end():m.end() + 60])[:3]
        for word in following:
            if _CAR_NOUN_RE.search(word) or any(p.fullmatch(word) for p in _BRAND_RES.values()):
                break
            if _PARTS_NOUN_RE.search(word):
                return True
    return False


def _signals(post: _Post, car: CarData) -> _Signals:
    work = post.work
    return _Signals(
        sale_verb=bool(_SALE_VERB_RE.search(work)),
        parts_sale=_parts_sale(post),
        identity=car.brand is not None or car.model is not None,
        year=car.year is not None,
        price=car.price is not None or bool(_NEGOTIABLE_RE.search(work)),
        mileage=car.mileage is not None,
        specs=sum(x is not None for x in (car.owners, car.transmission, car.engine_volume)),
        buyer=bool(_BUYER_RE.search(work)),
        question=bool(_QUESTION_RE.search(work)),
        question_mark="?" in work,
        service=bool(_SERVICE_RE.search(work)),
        weak_service=bool(_WEAK_SERVICE_RE.search(work)),
        parts=bool(_PARTS_RE.search(work)),
        news=bool(_NEWS_RE.search(work)) and not (_AUCTION_RE.search(work) and car.year is not None),
        import_order=bool(_IMPORT_RE.search(work)),
        sold=bool(_SOLD_RE.search(work)),
        price_question=bool(_PRICE_QUESTION_RE.search(work)),
    )


_DECISION_BIAS = 3.0


def _score(s: _Signals) -> float:
    positive = (
        (2.5 if s.sale_verb and not s.parts_sale else 0.0)
        + (1.5 if s.identity else 0.0)
        + (1.0 if s.year else 0.0)
        + (1.5 if s.price else 0.0)
        + (1.5 if s.mileage else 0.0)
        + 0.5 * min(s.specs, 2)
    )
    negative = (
        (4.0 if s.buyer else 0.0)
        + (2.5 if s.question else 0.0)
        + (1.0 if s.question_mark else 0.0)
        + (3.0 if s.service else 0.0)
        + (1.0 if s.weak_service else 0.0)
        + (4.0 if s.parts or s.parts_sale else 0.0)
        + (3.0 if s.news else 0.0)
        # an import service advert names no specific car; one that does (year and price or mileage) sells it
        + (3.0 if s.import_order and not (s.identity and s.year and (s.price or s.mileage)) else 0.0)
        + (6.0 if s.sold else 0.0)
        + (4.0 if s.price_question else 0.0)
    )
    return positive - negative - _DECISION_BIAS


def _confidence(margin: float) -> float:
    # Margin 4 (e.g. brand + year + price + mileage + a sale verb) -> about 0.93; margin 1 -> 0.71.
    return round(min(0.99, 0.5 + 0.49 * (1.0 - math.exp(-abs(margin) / 1.8))), 2)


def _reason(s: _Signals, is_sale: bool) -> str:
    if is_sale:
        found = [name for flag, name in (
            (s.sale_verb, "намерение продать"), (s.identity, "марка/модель"), (s.year, "год"),
            (s.price, "цена"), (s.mileage, "пробег"),
        ) if flag]
        return "Объявление о продаже автомобиля: есть " + ", ".join(found or ["описание автомобиля"]) + "."
    kinds = [name for flag, name in (
        (s.buyer, "запрос покупателя"), (s.question or s.question_mark, "вопрос или обсуждение"),
        (s.service or s.weak_service, "реклама услуг"), (s.parts or s.parts_sale, "продажа запчастей или шин"),
        (s.news, "новость или обзор"), (s.import_order, "реклама услуг (пригон под заказ)"),
        (s.sold, "автомобиль уже продан"), (s.price_question, "вопрос о цене"),
    ) if flag]
    if kinds:
        return "Не объявление о продаже автомобиля: " + ", ".join(kinds) + "."
    return "Не объявление о продаже автомобиля: нет признаков продажи конкретной машины."


# ---------------------------------------------------------------------------------------------
# Public API


_LISTING_PRICE_RE = re.compile(r"\d\s?(?:₽|руб|р\b|т\.\s?р|тр\b|млн|тыс\.?\s?(?:руб|₽))")


def _first_listing(text: str) -> str | None:
    """A dealer's list of several cars, one a line, each with its year and price: the first car's
    line with the lines that are not listings (the header, the address), or None for one car."""
    lines = text.splitlines()
    listing = [i for i, line in enumerate(lines)
               if _YEAR_RE.search(line) and _LISTING_PRICE_RE.search(_lower_same_length(line))]
    if len(listing) < 2:
        return None
    return "\n".join(line for i, line in enumerate(lines) if i == listing[0] or i not in listing)


def extract(text: str) -> CarData:
    """Extract structured car data from a post; fields that are not stated are ``None``.

    A list of several cars (one a line) describes its first car."""
    first = _first_listing(text)
    if first is not None:
        return extract(first)
    post = _prepare(text)
    amounts = _amounts(post)
    mileage = _find_mileage(post, amounts)
    market = _find_market_price(post, amounts)
    price = _find_price(post, amounts, exclude=(mileage[0] if mileage else None, market))
    if mileage is None:
        mileage, price = _bare_thousands(post, amounts, market, price)
    brand, model = _find_brand_model(post)
    equipment, condition = _phrases(post)
    return CarData(
        brand=brand,
        model=model,
        year=_find_year(post),
        price=price.value if price else None,
        mileage=mileage[1] if mileage else None,
        engine_volume=_find_engine_volume(post),
        transmission=_find_transmission(post),
        fuel=_find_fuel(post),
        owners=_find_owners(post),
        city=_find_city(post),
        equipment=", ".join(equipment) or None,
        autoteka_status=_find_autoteka(post),
        market_price=market.value if market else None,
        price_justification=_find_price_justification(post),
        condition=", ".join(condition) or None,
    )


def classify(text: str) -> Classification:
    """Decide whether ``text`` is a car-sale ad, with a calibrated confidence and a Russian reason."""
    return _classify(_prepare(text), extract(text))


def _classify(post: _Post, car: CarData) -> Classification:
    signals = _signals(post, car)
    margin = _score(signals)
    is_sale = margin > 0
    return Classification(is_sale=is_sale, confidence=_confidence(margin), reason=_reason(signals, is_sale))


def summarize(text: str, car: CarData | None = None) -> str:
    """A short factual Russian summary built only from equipment and condition phrases in ``text``.

    Leaves out make, model, year, engine, gearbox, fuel, mileage, owners, autoteka, price, city,
    contacts and emoji; at most :data:`SUMMARY_MAX_WORDS` words. Returns :data:`FALLBACK_SUMMARY`
    when the text states neither. ``car`` is accepted for interface symmetry with other backends;
    the phrases always come from the text itself.
    """
    del car  # phrases come from the text; the car data adds nothing that may go in a summary
    equipment, condition = _phrases(_prepare(text))
    budget = SUMMARY_MAX_WORDS - 2  # the two labels below
    equipment, budget = _cap_words(equipment, budget)
    condition, _ = _cap_words(condition, budget)
    sentences = []
    if equipment:
        sentences.append("Оснащение: " + ", ".join(equipment) + ".")
    if condition:
        sentences.append("Состояние: " + ", ".join(condition) + ".")
    return " ".join(sentences) or FALLBACK_SUMMARY


def analyse(text: str) -> Analysis:
    """Classify ``text`` and, for a sale ad, extract the car data and write the summary."""
    post = _prepare(text)
    car = extract(text)
    classification = _classify(post, car)
    if not classification.is_sale:
        return Analysis(classification=classification, car=None, summary=None, backend=BACKEND_NAME)
    return Analysis(classification=classification, car=car, summary=summarize(text, car), backend=BACKEND_NAME)

