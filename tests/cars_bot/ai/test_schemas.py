"""Result types: canonical brand spellings, and out-of-set values mapped before they reach the DB."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cars_bot.ai.schemas import Analysis, CarData, Classification, Usage, canonical_brand, canonical_model


@pytest.mark.parametrize(("raw", "brand"), [
    ("BMW", "BMW"), ("bmw", "BMW"), ("бмв", "BMW"), ("Mercedes", "Mercedes-Benz"), ("мерс", "Mercedes-Benz"),
    ("MERCEDES-BENZ", "Mercedes-Benz"), ("тойота", "Toyota"), ("хундай", "Hyundai"), ("Хендай", "Hyundai"),
    ("KIA", "Kia"), ("ваз", "Lada"), ("LADA", "Lada"), ("vw", "Volkswagen"), ("Фольксваген", "Volkswagen"),
    ("Škoda", "Skoda"), ("шкода", "Skoda"), ("land rover", "Land Rover"), ("УАЗ", "UAZ"),
    ("  Some  Rare Make ", "Some Rare Make"), ("DS", "DS"), ("", None), (None, None),
])
def test_brand_spelling_is_canonical_never_title_cased(raw: str | None, brand: str | None) -> None:
    assert canonical_brand(raw) == brand
    assert CarData(brand=raw).brand == brand


@pytest.mark.parametrize(("brand", "raw", "model"), [
    ("Toyota", "RAV4", "RAV4"), ("Toyota", "rav 4", "RAV4"), ("Toyota", "Рав4", "RAV4"), ("Toyota", "Камри", "Camry"),
    ("Hyundai", "Солярис", "Solaris"), ("Lada", "Веста", "Vesta"), ("Kia", "Рио", "Rio"),
    ("Volkswagen", "Поло", "Polo"),
    ("Skoda", "Октавия", "Octavia"), ("Lada", "Приора", "Priora"), ("Lada", "Гранта", "Granta"),
    ("Ford", "Фокус", "Focus"), ("Toyota", "Королла", "Corolla"), ("BMW", "X5", "X5"), ("BMW", "3 серии", "3 Series"),
    ("BMW", "520d", "5 Series"), ("Mercedes-Benz", "E 220d", "E-Class"), ("Mercedes-Benz", "С180", "C-Class"),
    ("Lexus", "RX350", "RX"), ("Tesla", "model 3", "Model 3"), ("Unknown", "Weird Model X", "Weird Model X"),
])
def test_model_spelling(brand: str, raw: str, model: str) -> None:
    assert canonical_model(brand, raw) == model
    assert CarData(brand=brand, model=raw).model == model


def test_out_of_set_values_are_mapped_not_rejected() -> None:
    car = CarData(transmission="полуавтомат", fuel="керосин", autoteka_status="жёлтая", year=1812, price=-5,
                  owners="много", mileage="150 тысяч", engine_volume="V8")
    assert (car.transmission, car.fuel, car.autoteka_status) == (None, None, "unknown")
    assert (car.year, car.price, car.owners, car.mileage, car.engine_volume) == (None, None, None, None, None)


@pytest.mark.parametrize(("raw", "value"), [
    ("automatic", "automatic"), ("АКПП", "automatic"), ("механика", "manual"), ("DSG", "robot"),
    ("вариатор", "variator"), ("CVT", "variator"), ("manual", "manual"), ("Manual ", "manual"),
])
def test_transmission_words(raw: str, value: str) -> None:
    assert CarData(transmission=raw).transmission == value


def test_numbers_and_volumes_are_normalised() -> None:
    car = CarData(year="2015", price=850000.0, mileage="150 000", owners=2, engine_volume="2,5 л",
                  market_price="1 600 000")
    assert (car.year, car.price, car.mileage, car.owners, car.engine_volume, car.market_price) == (
        2015, 850000, 150000, 2, "2.5", 1600000)
    assert CarData(engine_volume=1998).engine_volume == "2.0"
    assert CarData(engine_volume=1.6).engine_volume == "1.6"
    assert CarData(price=float("nan")).price is None
    assert CarData(price=float("inf")).price is None


def test_defaults_and_round_trip() -> None:
    car = CarData()
    assert car.autoteka_status == "unknown" and car.brand is None
    analysis = Analysis(classification=Classification(is_sale=True, confidence=0.9), car=car, backend="rules")
    assert Analysis.model_validate(analysis.model_dump()) == analysis
    assert Analysis.model_validate_json(analysis.model_dump_json()) == analysis


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(ValidationError):
        Classification(is_sale=True, confidence=1.5)


def test_usage_cost_may_be_unknown() -> None:
    assert Usage(model="x").cost_usd is None
