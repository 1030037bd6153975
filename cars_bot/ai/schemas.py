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

Transmission = Literal["automatic", "manual", "robot", "variator"]
Fuel = Literal["petrol", "diesel", "hybrid", "electric", "gas"]
AutotekaStatus = Literal["green", "has_accidents", "unknown"]

TRANSMISSIONS: tuple[str, ...] = ("automatic", "manual", "robot", "variator")
FUELS: tuple[str, ...] = ("petrol", "diesel", "hybrid", "electric", "gas")
AUTOTEKA_STATUSES: tuple[str, ...] = ("green", "has_accidents", "unknown")

# Canonical brand spelling -> aliases (lower case, Latin and Cyrillic). The canonical spelling is
# also an alias of itself. Order does not matter; lookups go through BRAND_BY_ALIAS.
BRANDS: dict[str, tuple[str, ...]] = {
    "Audi": ("audi", "ауди"),
    "BMW": ("bmw", "бмв", "бэха", "бэху", "бумер"),
    "BYD": ("byd", "бид"),
    "Cadillac": ("cadillac", "кадиллак"),
    "Changan": ("changan", "чанган"),
    "Chery": ("chery", "чери"),
    "Chevrolet": ("chevrolet", "шевроле", "шевролет", "шеви"),
    "Citroen": ("citroen", "citroën", "ситроен"),
    "Daewoo": ("daewoo", "дэу", "дэо", "деу"),
    "Datsun": ("datsun", "датсун"),
    "EXEED": ("exeed", "эксид"),
    "Ford": ("ford", "форд"),
    "GAZ": ("gaz",),
    "Geely": ("geely", "джили"),
    "Haval": ("haval", "хавал", "хавейл"),
    "Honda": ("honda", "хонда"),
    "Hyundai": ("hyundai", "хендай", "хундай", "хёндай", "хендэ", "хендэй", "хюндай", "хэндай"),
    "Infiniti": ("infiniti", "инфинити"),
    "Jeep": ("jeep", "джип"),
    "Kia": ("kia", "киа"),
    "Lada": ("lada", "лада", "ваз", "vaz"),
    "Land Rover": ("land rover", "ленд ровер", "лэнд ровер"),
    "Lexus": ("lexus", "лексус"),
    "Mazda": ("mazda", "мазда"),
    "Mercedes-Benz": ("mercedes-benz", "mercedes benz", "mercedes", "мерседес-бенц", "мерседес", "мерс",
                      "мерин"),
    "MINI": ("mini", "мини купер"),
    "Mitsubishi": ("mitsubishi", "мицубиси", "митсубиси", "мицубиши", "митсубиши"),
    "Nissan": ("nissan", "ниссан", "нисан"),
    "Omoda": ("omoda", "омода"),
    "Opel": ("opel", "опель"),
    "Peugeot": ("peugeot", "пежо"),
    "Porsche": ("porsche", "порше", "порш"),
    "Renault": ("renault", "рено"),
    "Skoda": ("skoda", "škoda", "шкода"),
    "SsangYong": ("ssangyong", "ssang yong", "санг йонг", "саньенг"),
    "Subaru": ("subaru", "субару"),
    "Suzuki": ("suzuki", "сузуки"),
    "Tank": ("tank",),
    "Tesla": ("tesla", "тесла"),
    "Toyota": ("toyota", "тойота", "тоёта", "тоета"),
    "UAZ": ("uaz", "уаз"),
    "Volkswagen": ("volkswagen", "vw", "фольксваген", "фольцваген", "фольксваген", "фольц", "фв"),
    "Volvo": ("volvo", "вольво"),
}

# Canonical model -> aliases, per brand. Aliases are lower case; spaces and hyphens are
# insignificant when matching ("rav 4", "рав-4" and "рав4" are the same alias).
MODELS: dict[str, dict[str, tuple[str, ...]]] = {
    "Audi": {"A3": ("a3",), "A4": ("a4",), "A5": ("a5",), "A6": ("a6",), "A8": ("a8",),
             "Q3": ("q3",), "Q5": ("q5",), "Q7": ("q7",), "Q8": ("q8",)},
    "BMW": {"X1": ("x1",), "X3": ("x3",), "X4": ("x4",), "X5": ("x5", "икс5", "х5"),
            "X6": ("x6", "х6"), "X7": ("x7",)},
    "Changan": {"CS35 Plus": ("cs35 plus", "cs35"), "CS55 Plus": ("cs55 plus", "cs55"),
                "UNI-K": ("uni-k", "unik")},
    "Chery": {"Tiggo 4 Pro": ("tiggo 4 pro",), "Tiggo 7 Pro Max": ("tiggo 7 pro max",),
              "Tiggo 7 Pro": ("tiggo 7 pro",), "Tiggo 8 Pro": ("tiggo 8 pro",),
              "Tiggo 4": ("tiggo 4",), "Tiggo 7": ("tiggo 7",), "Tiggo 8": ("tiggo 8",),
              "Arrizo 8": ("arrizo 8",)},
    "Chevrolet": {"Cruze": ("cruze", "круз"), "Lacetti": ("lacetti", "лачетти", "лачети"),
                  "Aveo": ("aveo", "авео"), "Cobalt": ("cobalt", "кобальт"),
                  "Niva": ("niva", "нива"), "Captiva": ("captiva", "каптива"),
                  "Tahoe": ("tahoe", "тахо")},
    "Daewoo": {"Nexia": ("nexia", "нексия", "нексиа"), "Matiz": ("matiz", "матиз"),
               "Gentra": ("gentra", "джентра")},
    "Ford": {"Focus": ("focus", "фокус"), "Mondeo": ("mondeo", "мондео"), "Kuga": ("kuga", "куга"),
             "Fiesta": ("fiesta", "фиеста"), "Explorer": ("explorer", "эксплорер"),
             "Transit": ("transit", "транзит")},
    "Geely": {"Coolray": ("coolray", "кулрей", "кулрэй"), "Monjaro": ("monjaro", "монжаро"),
              "Atlas Pro": ("atlas pro", "атлас про"), "Atlas": ("atlas", "атлас"),
              "Tugella": ("tugella", "тугелла"), "Emgrand": ("emgrand", "эмгранд")},
    "Haval": {"Jolion": ("jolion", "джолион"), "F7x": ("f7x",), "F7": ("f7",), "H6": ("h6",),
              "H9": ("h9",), "Dargo": ("dargo", "дарго")},
    "Honda": {"CR-V": ("cr-v", "crv", "срв"), "Civic": ("civic", "цивик"),
              "Accord": ("accord", "аккорд"), "Fit": ("fit", "фит"), "Pilot": ("pilot", "пилот")},
    "Hyundai": {"Solaris": ("solaris", "солярис", "соларис"), "Creta": ("creta", "крета"),
                "Tucson": ("tucson", "туссан", "туксон", "тусон"),
                "Santa Fe": ("santa fe", "санта фе", "санта-фе", "сантафе"),
                "Elantra": ("elantra", "элантра"), "Sonata": ("sonata", "соната"),
                "i30": ("i30",), "i40": ("i40",), "ix35": ("ix35",), "Getz": ("getz", "гетц"),
                "Accent": ("accent", "акцент"), "Palisade": ("palisade", "палисад")},
    "Kia": {"Rio": ("rio", "рио"), "Sportage": ("sportage", "спортейдж", "спортэйдж", "спортаж"),
            "Ceed": ("ceed", "cee'd", "сид"), "Optima": ("optima", "оптима"),
            "Sorento": ("sorento", "соренто"), "Cerato": ("cerato", "церато"),
            "Soul": ("soul", "соул"), "K5": ("k5", "к5"), "Seltos": ("seltos", "селтос"),
            "Picanto": ("picanto", "пиканто"), "Mohave": ("mohave", "мохав")},
    "Lada": {"Vesta": ("vesta", "веста"), "Granta": ("granta", "гранта", "гранту"),
             "Priora": ("priora", "приора", "приору"), "Kalina": ("kalina", "калина", "калину"),
             "Niva Travel": ("niva travel", "нива тревел"),
             "Niva": ("niva legend", "niva", "нива легенд", "нива", "ниву", "4x4", "4х4"),
             "Largus": ("largus", "ларгус"), "XRAY": ("xray", "x-ray", "иксрей"),
             "Iskra": ("iskra", "искра")},
    "Land Rover": {"Range Rover Evoque": ("range rover evoque", "эвок"),
                   "Range Rover Sport": ("range rover sport",), "Range Rover": ("range rover",),
                   "Discovery": ("discovery", "дискавери"), "Defender": ("defender", "дефендер")},
    "Lexus": {"RX": ("rx",), "NX": ("nx",), "LX": ("lx",), "ES": ("es",), "GX": ("gx",), "IS": ("is",)},
    "Mazda": {"CX-5": ("cx-5", "cx5", "сх-5", "сх5"), "CX-30": ("cx-30", "cx30"),
              "CX-9": ("cx-9", "cx9"), "6": ("6", "mazda6"), "3": ("3", "mazda3")},
    "Mercedes-Benz": {"GLE": ("gle",), "GLC": ("glc",), "GLS": ("gls",), "GLA": ("gla",),
                      "ML": ("ml",), "GL": ("gl",), "G-Class": ("g-class", "гелик", "гелендваген"),
                      "Sprinter": ("sprinter", "спринтер"), "Vito": ("vito", "вито")},
    "Mitsubishi": {"Outlander": ("outlander", "аутлендер", "аутлэндер"), "Lancer": ("lancer", "лансер"),
                   "Pajero Sport": ("pajero sport", "паджеро спорт"), "Pajero": ("pajero", "паджеро"),
                   "ASX": ("asx",), "L200": ("l200",), "Eclipse Cross": ("eclipse cross",)},
    "Nissan": {"Almera": ("almera", "альмера"), "Qashqai": ("qashqai", "кашкай"),
               "X-Trail": ("x-trail", "xtrail", "икстрейл", "х-трейл"), "Teana": ("teana", "теана"),
               "Note": ("note", "ноут"), "Juke": ("juke", "жук"), "Murano": ("murano", "мурано"),
               "Terrano": ("terrano", "террано"), "Patrol": ("patrol", "патрол"),
               "Tiida": ("tiida", "тиида")},
    "Opel": {"Astra": ("astra", "астра"), "Corsa": ("corsa", "корса"), "Insignia": ("insignia", "инсигния"),
             "Mokka": ("mokka", "мокка"), "Zafira": ("zafira", "зафира"), "Vectra": ("vectra", "вектра"),
             "Antara": ("antara", "антара")},
    "Peugeot": {"308": ("308",), "408": ("408",), "3008": ("3008",), "206": ("206",), "207": ("207",),
                "Partner": ("partner", "партнер")},
    "Citroen": {"C4": ("c4",), "C5": ("c5",), "C4 Picasso": ("c4 picasso",), "Berlingo": ("berlingo", "берлинго")},
    "Suzuki": {"Vitara": ("vitara", "витара"), "Grand Vitara": ("grand vitara", "гранд витара"),
               "SX4": ("sx4",), "Jimny": ("jimny", "джимни"), "Swift": ("swift", "свифт")},
    "Infiniti": {"QX50": ("qx50",), "QX60": ("qx60",), "QX70": ("qx70",), "QX80": ("qx80",), "FX35": ("fx35",),
                 "G25": ("g25",)},
    "SsangYong": {"Actyon": ("actyon", "актион"), "Kyron": ("kyron", "кайрон"), "Rexton": ("rexton", "рекстон")},
    "Datsun": {"on-DO": ("on-do", "ондо", "он-до"), "mi-DO": ("mi-do", "мидо", "ми-до")},
    "Omoda": {"C5": ("c5",), "S5": ("s5",)},
    "EXEED": {"TXL": ("txl",), "LX": ("lx",), "VX": ("vx",)},
    "Tank": {"300": ("300",), "500": ("500",)},
    "Jeep": {"Grand Cherokee": ("grand cherokee", "гранд чероки"), "Cherokee": ("cherokee", "чероки"),
             "Compass": ("compass", "компас"), "Wrangler": ("wrangler", "вранглер")},
    "Porsche": {"Cayenne": ("cayenne", "кайен"), "Macan": ("macan", "макан"),
                "Panamera": ("panamera", "панамера"), "911": ("911",)},
    "Renault": {"Logan": ("logan", "логан"), "Duster": ("duster", "дастер"),
                "Sandero Stepway": ("sandero stepway", "сандеро степвей"),
                "Sandero": ("sandero", "сандеро"), "Kaptur": ("kaptur", "каптур"),
                "Arkana": ("arkana", "аркана"), "Megane": ("megane", "меган"),
                "Fluence": ("fluence", "флюенс")},
    "Skoda": {"Octavia": ("octavia", "октавия", "октавиа"), "Rapid": ("rapid", "рапид"),
              "Kodiaq": ("kodiaq", "кодиак"), "Superb": ("superb", "суперб"),
              "Karoq": ("karoq", "карок"), "Fabia": ("fabia", "фабия"), "Yeti": ("yeti", "йети")},
    "Subaru": {"Forester": ("forester", "форестер"), "Outback": ("outback", "аутбэк", "аутбек"),
               "XV": ("xv",), "Impreza": ("impreza", "импреза"), "Legacy": ("legacy", "легаси")},
    "Tesla": {"Model 3": ("model 3",), "Model Y": ("model y",), "Model S": ("model s",),
              "Model X": ("model x",)},
    "Toyota": {"Camry": ("camry", "камри"), "Corolla": ("corolla", "королла", "карола"),
               "RAV4": ("rav4", "рав4", "рав"),
               "Land Cruiser Prado": ("land cruiser prado", "lc prado", "прадо", "прадик"),
               "Land Cruiser": ("land cruiser", "ленд крузер", "крузак", "lc200", "lc300"),
               "Highlander": ("highlander", "хайлендер"), "Hilux": ("hilux", "хайлюкс"),
               "Prius": ("prius", "приус"), "Auris": ("auris", "аурис"), "Yaris": ("yaris", "ярис"),
               "C-HR": ("c-hr", "chr")},
    "UAZ": {"Patriot": ("patriot", "патриот"), "Hunter": ("hunter", "хантер"),
            "Буханка": ("буханка", "буханку", "2206")},
    "Volkswagen": {"Polo": ("polo", "поло"), "Tiguan": ("tiguan", "тигуан"),
                   "Passat CC": ("passat cc", "пассат сс"), "Passat": ("passat", "пассат"),
                   "Jetta": ("jetta", "джетта"), "Golf": ("golf", "гольф"),
                   "Touareg": ("touareg", "туарег"), "Teramont": ("teramont", "терамонт"),
                   "Caddy": ("caddy", "кадди"), "Multivan": ("multivan", "мультивэн"),
                   "Transporter": ("transporter", "транспортер")},
    "Volvo": {"XC90": ("xc90", "хс90"), "XC60": ("xc60", "хс60"), "XC40": ("xc40",), "S60": ("s60",),
              "S80": ("s80",), "V40": ("v40",)},
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
    if number >= 500:  # cubic centimetres
        number = number / 1000
    if not 0.5 <= number <= 8.5:
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
