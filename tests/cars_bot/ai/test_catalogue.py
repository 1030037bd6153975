"""The make/model catalogue (cars_bot/data/car_catalogue.json): shape and coverage."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from cars_bot.ai.catalogue import catalogue
from cars_bot.ai.rules import extract

RAW = json.loads(resources.files("cars_bot").joinpath("data", "car_catalogue.json").read_text(encoding="utf-8"))

#: Makes sold new in Russia over the last 20 years (importers' and registration statistics), by group.
EXPECTED_MAKES = {
    "Russian": ("Lada", "GAZ", "UAZ", "Moskvich", "Aurus", "Solaris", "XCite"),
    "Chinese": ("Chery", "Haval", "Geely", "Changan", "Exeed", "Omoda", "Jaecoo", "Tank", "JAC", "Jetour",
                "Li Auto", "Zeekr", "Voyah", "Hongqi", "GAC", "Kaiyi", "Livan", "Dongfeng", "FAW", "BAIC",
                "Great Wall", "BYD", "Lifan", "Brilliance", "Zotye", "Vortex", "Jetta", "Tenet", "Belgee",
                "Foton"),
    "Korean and Japanese": ("Hyundai", "Kia", "Genesis", "SsangYong", "Daewoo", "Ravon", "Toyota", "Lexus",
                            "Nissan", "Infiniti", "Datsun", "Mitsubishi", "Mazda", "Honda", "Acura", "Subaru",
                            "Suzuki", "Isuzu", "Daihatsu"),
    "European": ("Volkswagen", "Skoda", "Audi", "Porsche", "BMW", "MINI", "Mercedes-Benz", "Smart", "Opel",
                 "Renault", "Peugeot", "Citroen", "Fiat", "Alfa Romeo", "Volvo", "Ford", "Seat", "Saab",
                 "Land Rover", "Jaguar", "Bentley", "Rolls-Royce", "Maserati", "Ferrari", "Lamborghini",
                 "Aston Martin", "Iveco"),
    "American": ("Chevrolet", "Cadillac", "Jeep", "Chrysler", "Dodge", "Lincoln", "Tesla"),
    "motorcycles": ("Yamaha", "Kawasaki", "Ducati", "Harley-Davidson", "KTM"),
}


def test_every_expected_make_is_catalogued_with_models() -> None:
    names = {make.name for make in catalogue().makes}
    missing = [name for group in EXPECTED_MAKES.values() for name in group if name not in names]
    assert not missing
    assert len(names) >= 90
    assert sum(len(make.models) for make in catalogue().makes) >= 800
    for make in catalogue().makes:
        assert make.models, make.name


def test_the_file_is_well_formed() -> None:
    assert RAW["about"]
    names = [make["name"] for make in RAW["makes"]]
    assert len(names) == len(set(names))
    for make in RAW["makes"]:
        models = [model["name"] for model in make["models"]]
        assert len(models) == len(set(models)), make["name"]
        for alias in (*make.get("aliases", ()), *make.get("weak_aliases", ()),
                      *(a for m in make["models"] for a in (*m.get("aliases", ()), *m.get("weak_aliases", ())))):
            assert alias == alias.lower().strip() and alias, (make["name"], alias)


def test_popular_makes_have_cyrillic_spellings() -> None:
    cyrillic = re.compile(r"[а-я]")
    for make in catalogue().makes:
        assert any(cyrillic.search(a) for a in (*make.aliases, *make.weak_aliases)), make.name


@pytest.mark.parametrize(("text", "brand", "model"), [
    # variants that are separate families
    ("Лада Нива Легенд 2022", "Lada", "Niva Legend"), ("Нива Тревел 2021", "Lada", "Niva Travel"),
    ("Шевроле Нива 2012", "Chevrolet", "Niva"), ("Прадо 150 2014", "Toyota", "Land Cruiser Prado"),
    ("Крузак 200 2012", "Toyota", "Land Cruiser"), ("Паджеро Спорт 2017", "Mitsubishi", "Pajero Sport"),
    ("Range Rover Sport 2018", "Land Rover", "Range Rover Sport"), ("Рендж Ровер Велар", "Land Rover",
                                                                    "Range Rover Velar"),
    ("Сандеро Степвей 2019", "Renault", "Sandero Stepway"), ("Geely Atlas Pro 2022", "Geely", "Atlas Pro"),
    ("Haval F7x 2021", "Haval", "F7x"), ("Tiggo 7 Pro Max 2023", "Chery", "Tiggo 7 Pro Max"),
    # commercial vans
    ("Газель Next 2019 фургон", "GAZ", "Gazelle Next"), ("Соболь 2020", "GAZ", "Sobol"),
    ("Форд Транзит 2016", "Ford", "Transit"), ("Мерседес Спринтер 2014", "Mercedes-Benz", "Sprinter"),
    ("Пежо Боксер 2012", "Peugeot", "Boxer"), ("Фиат Дукато 2013", "Fiat", "Ducato"),
    ("Хендай Портер 2018", "Hyundai", "Porter"), ("Iveco Daily 2015", "Iveco", "Daily"),
    ("Ситроен Джампер 2017", "Citroen", "Jumper"), ("Рено Мастер 2016", "Renault", "Master"),
    # newer Chinese, premium and Russian makes
    ("Omoda C5 2023", "Omoda", "C5"), ("Jaecoo J7 2024", "Jaecoo", "J7"), ("Zeekr 001 2023", "Zeekr", "001"),
    ("Лисян L9 2023", "Li Auto", "L9"), ("Voyah Free 2022", "Voyah", "Free"), ("Хончи H9", "Hongqi", "H9"),
    ("Tank 500 2023", "Tank", "500"), ("Jetour X70 Plus", "Jetour", "X70 Plus"), ("Kaiyi E5", "Kaiyi", "E5"),
    ("Tenet T7 2024", "Tenet", "T7"), ("Москвич 3 2023", "Moskvich", "3"), ("Genesis GV80", "Genesis", "GV80"),
    ("Аурус Сенат", "Aurus", "Senat"), ("Belgee X50 2023", "Belgee", "X50"), ("Changan UNI-V", "Changan", "UNI-V"),
    # a make that is also a model name, and one that is also a word
    ("Hyundai Solaris 2017", "Hyundai", "Solaris"), ("Солярис 2017", "Hyundai", "Solaris"),
    ("Solaris HS 2024", "Solaris", "HS"), ("ГАЗ 31105 2007", "GAZ", "31105"),
    ("Jetta VS5 2023", "Jetta", "VS5"), ("Фольксваген Джетта 2013", "Volkswagen", "Jetta"),
])
def test_the_catalogue_names_the_car(text: str, brand: str, model: str) -> None:
    car = extract(text)
    assert (car.brand, car.model) == (brand, model)


def test_gas_the_fuel_is_not_a_make() -> None:
    car = extract("Продам Гранту 2019, 1.6, газ/бензин, 640 тыс")
    assert (car.brand, car.model, car.fuel) == ("Lada", "Granta", "gas")


def test_the_catalogue_is_read_once() -> None:
    assert catalogue() is catalogue()
