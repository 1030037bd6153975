"""Result types of the AI pipeline, shared by every backend (rules, OpenAI).

Validators here are the last line of defence before the database: values outside the fixed sets
become ``None`` (or ``"unknown"`` for the autoteka status) instead of breaking an enum column, and
brand names are mapped to one canonical spelling instead of being title-cased ("BMW" stays "BMW").
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from cars_bot.ai.catalogue import catalogue

Transmission = Literal["automatic", "manual", "robot", "variator"]
Fuel = Literal["petrol", "diesel", "hybrid", "electric", "gas"]
AutotekaStatus = Literal["green", "has_accidents", "unknown"]

TRANSMISSIONS: tuple[str, ...] = ("automatic", "manual", "robot", "variator")
FUELS: tuple[str, ...] = ("petrol", "diesel", "hybrid", "electric", "gas")
AUTOTEKA_STATUSES: tuple[str, ...] = ("green", "has_accidents", "unknown")

# The catalogue (cars_bot/data/car_catalogue.json, see cars_bot.ai.catalogue): canonical make ->
# its aliases (lower case, Latin and Cyrillic, the weak ones included), and canonical model -> aliases
# per make. Spaces and hyphens are insignificant when matching ("rav 4", "рав-4" and "рав4").
BRANDS: dict[str, tuple[str, ...]] = {
    make.name: (*make.aliases, *make.weak_aliases) for make in catalogue().makes
}
MODELS: dict[str, dict[str, tuple[str, ...]]] = {
    make.name: {model.name: (*model.aliases, *model.weak_aliases) for model in make.models}
    for make in catalogue().makes
}

BRAND_BY_ALIAS: dict[str, str] = {
    alias: canonical for canonical, aliases in BRANDS.items() for alias in (canonical.lower(), *aliases)
}

_MODEL_KEY_RE = re.compile(r"[\s\-_]+")


# Cyrillic letters that look like Latin ones; people type "С180" or "Х5" with Cyrillic letters.
_LOOKALIKES = str.maketrans("авекмнорстухі", "abekmhopctyxi")


def _model_key(value: str) -> str:
    key = _MODEL_KEY_RE.sub("", value.strip().lower().replace("ё", "е"))
    if any(ch.isdigit() for ch in key):
        key = key.translate(_LOOKALIKES)
    return key


# Model families whose names carry an engine or body number: the catalogue lists the family.
_MODEL_PATTERNS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "Mercedes-Benz": (
        (re.compile(r"^([abcegsv])(?:-?class|klasse|класс|\d{2,3}[a-z]{0,4})$"), "{0}-Class"),
        (re.compile(r"^([асе])(?:-?класс)$"), "{0}-Class"),
    ),
    "BMW": (
        (re.compile(r"^(\d)(?:series|серии|серия|ер|er)$"), "{0} Series"),
        (re.compile(r"^(\d)\d{2}[a-z]{0,2}$"), "{0} Series"),
    ),
    "Lexus": ((re.compile(r"^(rx|nx|lx|es|gx|is|ls)\d{3}[a-z]{0,2}$"), "{0}"),),
}
_CYRILLIC_CLASS = str.maketrans("асе", "ace")


_MODEL_BY_ALIAS: dict[str, dict[str, str]] = {
    brand: {_model_key(alias): canonical for canonical, aliases in models.items()
            for alias in (canonical, *aliases)}
    for brand, models in MODELS.items()
}

_TRANSMISSION_WORDS: dict[str, str] = {
    "automatic": "automatic", "auto": "automatic", "at": "automatic", "акпп": "automatic",
    "автомат": "automatic", "автоматическая": "automatic",
    "manual": "manual", "mt": "manual", "мкпп": "manual", "механика": "manual", "мех": "manual",
    "robot": "robot", "amt": "robot", "dsg": "robot", "dct": "robot", "робот": "robot",
    "ркпп": "robot", "powershift": "robot", "s tronic": "robot", "s-tronic": "robot",
    "variator": "variator", "cvt": "variator", "вариатор": "variator", "multitronic": "variator",
}
_FUEL_WORDS: dict[str, str] = {
    "petrol": "petrol", "gasoline": "petrol", "бензин": "petrol",
    "diesel": "diesel", "дизель": "diesel",
    "hybrid": "hybrid", "гибрид": "hybrid",
    "electric": "electric", "ev": "electric", "электро": "electric", "электричество": "electric",
    "gas": "gas", "lpg": "gas", "cng": "gas", "газ": "gas", "гбо": "gas", "метан": "gas", "пропан": "gas",
}
_AUTOTEKA_WORDS: dict[str, str] = {
    "green": "green", "clean": "green", "зеленая": "green", "зелёная": "green", "чистая": "green",
    "без дтп": "green",
    "has_accidents": "has_accidents", "accidents": "has_accidents", "дтп": "has_accidents",
    "битая": "has_accidents", "были дтп": "has_accidents",
}


def canonical_brand(value: str | None) -> str | None:
    """Return the canonical spelling of a car brand ("бмв" -> "BMW", "Škoda" -> "Skoda").

    Unknown brands are returned stripped but otherwise as written: never title-cased.
    """
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    return BRAND_BY_ALIAS.get(text.lower().replace("ё", "е"), BRAND_BY_ALIAS.get(text.lower(), text))


def canonical_model(brand: str | None, value: str | None) -> str | None:
    """Return the canonical spelling of a model of ``brand`` ("Камри" -> "Camry", "рав4" -> "RAV4").

    Models that are not in the catalogue are returned stripped but otherwise as written.
    """
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    canonical = canonical_brand(brand) or ""
    key = _model_key(text)
    found = _MODEL_BY_ALIAS.get(canonical, {}).get(key)
    if found:
        return found
    raw_key = _MODEL_KEY_RE.sub("", text.lower().replace("ё", "е"))
    for pattern, template in _MODEL_PATTERNS.get(canonical, ()):
        match = pattern.match(key) or pattern.match(raw_key)
        if match:
            return template.format(match.group(1).translate(_CYRILLIC_CLASS).upper())
    return text


def _lookup(table: dict[str, str], value: Any) -> str | None:
    if value is None:
        return None
    key = " ".join(str(value).split()).lower()
    return table.get(key) or table.get(key.replace("ё", "е"))


def coerce_transmission(value: Any) -> str | None:
    """Map a gearbox value (English enum value or Russian word) to the enum, anything else to None."""
    return _lookup(_TRANSMISSION_WORDS, value)


def coerce_fuel(value: Any) -> str | None:
    """Map a fuel value (English enum value or Russian word) to the enum, anything else to None."""
    return _lookup(_FUEL_WORDS, value)


def coerce_autoteka(value: Any) -> str:
    """Map an autoteka value to green / has_accidents, and anything else (or nothing) to unknown."""
    return _lookup(_AUTOTEKA_WORDS, value) or "unknown"


def _coerce_int(value: Any, low: int, high: int) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = re.sub(r"[\s\u00a0_]", "", value)
        if not re.fullmatch(r"-?\d+(?:[.,]0+)?", digits):
            return None
        value = int(float(digits.replace(",", ".")))
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = round(value)
    if not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def coerce_engine_volume(value: Any) -> str | None:
    """Normalise an engine volume to litres with one decimal ("2,5 л" -> "2.5", 1998 -> "2.0")."""
    if value is None or isinstance(value, bool):
        return None
    match = re.search(r"(?<![A-Za-zА-Яа-я\d])\d+(?:[.,]\d+)?", str(value))  # not the 8 of "V8"
    if not match:
        return None
    number = float(match.group(0).replace(",", "."))
    if number >= 45:  # cubic centimetres (a motorcycle's may be 50)
        number = number / 1000
    if not 0.05 <= number <= 8.5:
        return None
    return f"{number:.1f}"


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


TransmissionField = Annotated[Transmission | None, BeforeValidator(coerce_transmission)]
FuelField = Annotated[Fuel | None, BeforeValidator(coerce_fuel)]
AutotekaField = Annotated[AutotekaStatus, BeforeValidator(coerce_autoteka)]
EngineVolumeField = Annotated[str | None, BeforeValidator(coerce_engine_volume)]
YearField = Annotated[int | None, BeforeValidator(lambda v: _coerce_int(v, 1950, 2035))]
PriceField = Annotated[int | None, BeforeValidator(lambda v: _coerce_int(v, 1, 1_000_000_000))]
MileageField = Annotated[int | None, BeforeValidator(lambda v: _coerce_int(v, 0, 5_000_000))]
OwnersField = Annotated[int | None, BeforeValidator(lambda v: _coerce_int(v, 0, 20))]
TextField = Annotated[str | None, BeforeValidator(_optional_text)]


class Classification(BaseModel):
    """Whether a post is a car-sale ad, how sure the backend is, and why (one or two sentences)."""

    model_config = ConfigDict(frozen=True)

    is_sale: bool
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = ""


class CarData(BaseModel):
    """Structured facts about the car in a sale ad; every field is optional.

    Out-of-set values are mapped to ``None`` (``"unknown"`` for ``autoteka_status``), implausible
    numbers are dropped, and brand/model spellings are canonicalised, never title-cased.
    """

    brand: TextField = None
    model: TextField = None
    year: YearField = None
    price: PriceField = Field(default=None, description="RUB")
    mileage: MileageField = Field(default=None, description="km")
    engine_volume: EngineVolumeField = Field(default=None, description='litres, e.g. "2.5"')
    transmission: TransmissionField = None
    fuel: FuelField = None
    owners: OwnersField = None
    city: TextField = None
    equipment: TextField = None
    autoteka_status: AutotekaField = "unknown"
    market_price: PriceField = None
    price_justification: TextField = None
    condition: TextField = None

    @field_validator("brand", mode="after")
    @classmethod
    def _canonical_brand(cls, value: str | None) -> str | None:
        return canonical_brand(value)

    @field_validator("model", mode="after")
    @classmethod
    def _canonical_model(cls, value: str | None, info: Any) -> str | None:
        return canonical_model(info.data.get("brand"), value)


class Analysis(BaseModel):
    """The outcome of analysing one post: classification, car data and summary for sales."""

    classification: Classification
    car: CarData | None = None
    summary: str | None = None
    backend: str


class Usage(BaseModel):
    """Token usage of one model call and its cost in USD (``None`` when the price is unknown)."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, billed at the cached-input price
    cost_usd: float | None = None
