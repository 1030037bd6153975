"""The deterministic rules backend: messy Russian car-sale posts, non-sales, summaries, and the
accuracy thresholds on the labelled corpus."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cars_bot.ai import rules
from cars_bot.ai.rules import FALLBACK_SUMMARY, analyse, classify, extract, summarize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CORPUS = HERE / "corpus.jsonl"
HOLDOUT = HERE / "holdout.jsonl"
STYLES = HERE / "corpus_styles.jsonl"  # hand-written, in many channel styles (tuned on)
SYNTHETIC = HERE / "synthetic.jsonl"  # generated from the catalogue (bench/make_synthetic_corpus.py)
UNSEEN = HERE / "unseen.jsonl"  # written before the tuning and never read while tuning: only scored
UNSEEN_SECOND = HERE / "unseen_second.jsonl"  # written after the tuning ended: only scored


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_extraction_accuracy", ROOT / "bench" /
                                                  "bench_extraction_accuracy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# Numbers: price and mileage formats


@pytest.mark.parametrize(("text", "price"), [
    ("Продам Камри 2015, цена 1.2 млн", 1_200_000),
    ("Продам Камри 2015, цена 1,2 млн", 1_200_000),
    ("Гранта 2019, 850 т.р.", 850_000),
    ("Гранта 2019, 850 000 ₽", 850_000),
    ("Гранта 2019, цена 850к", 850_000),
    ("Гранта 2019, 850 тыс. руб", 850_000),
    ("Веста 2021, цена 1 150 000", 1_150_000),
    ("Приора 2012, цена 300.000 руб", 300_000),
    ("Гольф 2014, цена 1.1кк, торг", 1_100_000),
    ("Киа Оптима 2017, цена 1 780 тыс.", 1_780_000),
    ("Лансер 2008, цена 480т. Пенза", 480_000),
    ("Логан 2013, 450 000 р. Торг", 450_000),
])
def test_price_formats(text: str, price: int) -> None:
    assert extract(text).price == price


@pytest.mark.parametrize(("text", "mileage"), [
    ("Камри 2015, пробег 150к, цена 1.2 млн", 150_000),
    ("Камри 2015, 150 тыс. км, цена 1.2 млн", 150_000),
    ("Солярис, пробег 98 тыс.км, 800 000 ₽", 98_000),
    ("Гранта, пробег 74т км, цена 640к", 74_000),
    ("Аутлендер, пробег 160 т.км, 1 390 000 р", 160_000),
    ("Октавия, пробег 134000, 1 290 000", 134_000),
    ("Рио, пробег:120.000км, цена 950.000р", 120_000),
    ("ВАЗ 2114, пробег 200+ тыс, 165 000 руб", 200_000),
    ("Королла, без пробега по РФ, пробег 38 000 км. 1 750 000", 38_000),
])
def test_mileage_formats(text: str, mileage: int) -> None:
    assert extract(text).mileage == mileage


@pytest.mark.parametrize(("text", "price"), [
    ("Солярис 2016, вложено 200к, налог 12 000. Цена 850 000 ₽", 850_000),
    ("Поло 2018, бензин 92, на 18 дисках, ТО за 30 тыс, цена 990 000", 990_000),
    ("X5 2010. Вложено 400к: цепи. Налог 36 000. Цена 1 690 000. Торг.", 1_690_000),
    ("Tucson 2019. Цена 2 450 000 ₽, при быстрой сделке торг 50к. Москва", 2_450_000),
    ("Королла 2010. Колёса R16 зима в подарок (стоят 40т). Цена: 820 000 руб.", 820_000),
    ("Cayenne 2011. Вложено 700 000 за два года. Цена 2 250 000. Сочи", 2_250_000),
    ("Солярис 2017, звонить после 18:00 89172223344, цена 1 050 000 руб", 1_050_000),
    ("Rio 2014, WhatsApp 8 900 123 45 67. Цена 690 т.р.", 690_000),
])
def test_numbers_that_are_not_the_price(text: str, price: int) -> None:
    assert extract(text).price == price


def test_unpriced_ad_has_no_price() -> None:
    car = extract("Продаю Hyundai Elantra 2011, 1.6 АКПП, пробег 140 тыс. Цена договорная, пишите в ЛС")
    assert car.price is None and car.mileage == 140_000


def test_market_price_and_justification() -> None:
    car = extract("Пассат Б8 2016, 2.0 TDI DSG, есть рыночная цена 1.6 млн, отдаю дешевле за 1 450 000 "
                  "из-за переезда. Москва")
    assert (car.price, car.market_price) == (1_450_000, 1_600_000)
    assert car.price_justification == "из-за переезда"
    assert extract("Гранта 2019, цена 640к").price_justification is None
    assert extract("Гранта 2019, цена 640к").market_price is None


# ------------------------------------------------------------------------------------------------
# Year, engine, gearbox, fuel, owners


@pytest.mark.parametrize(("text", "year"), [
    ("Kia Rio 2014 г.в., МКПП", 2014),
    ("Камри 55 2015г 2.0 АКПП", 2015),
    ("Ford Focus 3, 2012 год, 1.6", 2012),
    ("Солярис 2014 года выпуска, 1,4 механика", 2014),
    ("Киа Спортейдж 2017 г.в. Куплен в 2019 году.", 2017),
    ("Haval Jolion 2022, на гарантии до 2025", 2022),
    ("Продам Весту 2021г, гарантия до 2026 года", 2021),
])
def test_year(text: str, year: int) -> None:
    assert extract(text).year == year


@pytest.mark.parametrize(("text", "volume"), [
    ("Камри 2015, 2.5L, пробег 120к", "2.5"),
    ("Октавия 1,4 TSI DSG", "1.4"),
    ("Jolion 1.5T робот", "1.5"),
    ("X5 E70 3.0d 2010 года", "3.0"),
    ("Лада 1.6 8кл 87 л.с.", "1.6"),
    ("Цена 1.2 млн, расход 6.5 л/100км, до 100 за 8.5 сек", None),
])
def test_engine_volume(text: str, volume: str | None) -> None:
    assert extract(text).engine_volume == volume


@pytest.mark.parametrize(("text", "transmission"), [
    ("2.5 АКПП", "automatic"), ("1.6 автомат", "automatic"), ("Kia Ceed 2019 1.6 AT", "automatic"),
    ("1.6 МКПП", "manual"), ("1.7 механика", "manual"), ("1.6 мех, пробег", "manual"),
    ("1.6 робот", "robot"), ("1.4 TSI DSG", "robot"), ("1.6 Powershift", "robot"), ("S tronic", "robot"),
    ("2.0 вариатор", "variator"), ("2.0 CVT", "variator"),
    ("4.8 S, Tiptronic", "automatic"), ("дизель, 9G-Tronic", "automatic"),
    ("Автомобиль в отличном состоянии", None),
])
def test_transmission(text: str, transmission: str | None) -> None:
    assert extract(text).transmission == transmission


@pytest.mark.parametrize(("text", "fuel"), [
    ("2.7 бензин, механика", "petrol"), ("3.0 дизель", "diesel"), ("Королла гибрид 2019", "hybrid"),
    ("Tesla Model 3, электро", "electric"), ("ГБО 4 поколения, бензин 92", "gas"), ("газ/бензин", "gas"),
    ("2.0 TDI DSG", "diesel"), ("1.4 TSI", "petrol"),
    ("Хендай Солярис, электропривод зеркал", None), ("Газ в пол, тапка", None),
])
def test_fuel(text: str, fuel: str | None) -> None:
    assert extract(text).fuel == fuel


@pytest.mark.parametrize(("text", "owners"), [
    ("1 владелец", 1), ("2 хозяина по ПТС", 2), ("один хозяин", 1), ("Владелец один.", 1),
    ("Хозяев по ПТС - 3.", 3), ("Владельцев: 2", 2), ("3 хоз.", 3), ("2 вл. по ПТС", 2),
    ("Я второй владелец.", 2), ("ПТС оригинал, 2 собственника", 2), ("Два владельца.", 2),
    ("Куплен у официального дилера", None),
])
def test_owners(text: str, owners: int | None) -> None:
    assert extract(text).owners == owners


@pytest.mark.parametrize(("text", "status"), [
    ("Автотека зелёная", "green"), ("автотека чистая", "green"), ("Один хозяин, без ДТП.", "green"),
    ("Было ДТП, правое крыло менялось", "has_accidents"), ("Автотека: было одно ДТП", "has_accidents"),
    ("Веста 2019, битая, 700 тыс", "has_accidents"),
    ("Не бита, не крашена", "unknown"), ("Гранта 2019, цена 640к", "unknown"),
])
def test_autoteka(text: str, status: str) -> None:
    assert extract(text).autoteka_status == status


# ------------------------------------------------------------------------------------------------
# Brand, model, city


@pytest.mark.parametrize(("text", "brand", "model"), [
    ("Продам Камри 2015", "Toyota", "Camry"),
    ("Солярис 2017", "Hyundai", "Solaris"),
    ("Продам Весту 2021г", "Lada", "Vesta"),
    ("Рио 2019 АКПП", "Kia", "Rio"),
    ("Фольксваген Поло 2020", "Volkswagen", "Polo"),
    ("Шкода Октавия А7 2016", "Skoda", "Octavia"),
    ("Продам Приору 2011 г.", "Lada", "Priora"),
    ("ГРАНТА ЛИФТБЕК 2019", "Lada", "Granta"),
    ("Ford Фокус 2012", "Ford", "Focus"),
    ("Тойота Королла 2019", "Toyota", "Corolla"),
    ("Тойота Рав4 2019", "Toyota", "RAV4"),
    ("бмв х5 2012 дизель", "BMW", "X5"),
    ("Продам BMW 3 серии 2008 года", "BMW", "3 Series"),
    ("Мерс С180 2014", "Mercedes-Benz", "C-Class"),
    ("хендай крета 2020", "Hyundai", "Creta"),
    ("хундай санта фе 2012", "Hyundai", "Santa Fe"),
    ("киа спортейдж 2017", "Kia", "Sportage"),
    ("лада калина 2014", "Lada", "Kalina"),
    ("ВАЗ 2114 2010 г", "Lada", "2114"),
    ("Škoda Rapid 2019", "Skoda", "Rapid"),
    ("Пассат Б8 2016", "Volkswagen", "Passat"),
    ("Нива Легенд 2021", "Lada", "Niva Legend"),
    ("Лада Нива Тревел 2022", "Lada", "Niva Travel"),
    ("Продам Ниву 2015", "Lada", "Niva"),
    ("Hyundai Solaris 2018", "Hyundai", "Solaris"),
    ("Solaris KRS 2024", "Solaris", "KRS"),
    ("Газель Некст 2019", "GAZ", "Gazelle Next"),
    ("ГАЗ 3110 2003", "GAZ", "3110"),
    ("Шевроле Нива 2015", "Chevrolet", "Niva"),
    ("Lexus RX350 2016", "Lexus", "RX"),
])
def test_brand_and_model(text: str, brand: str, model: str) -> None:
    car = extract(text)
    assert (car.brand, car.model) == (brand, model)


@pytest.mark.parametrize(("text", "city"), [
    ("Цена 1 190 000 ₽\n📍 Самара\n📞 8-927-345-11-20", "Самара"),
    ("Цена 690 т.р.\nг. Воронеж", "Воронеж"),
    ("Город: Уфа\nСостояние отличное", "Уфа"),
    ("Цена 1 050 000 руб. Казань, звонить после 18:00", "Казань"),
    ("Цена 3 150 000 рублей. СПб", "Санкт-Петербург"),
    ("Цена 1.1кк, торг. Мск", "Москва"),
    ("Продам Приору 2011 г. Седан, 1.6", None),
    ("Приора, 290 000 торг. Ижевск 89124445566", "Ижевск"),
    ("Продаю в Нижнем Новгороде", "Нижний Новгород"),
])
def test_city(text: str, city: str | None) -> None:
    assert extract(text).city == city


def test_emoji_bullet_layout() -> None:
    text = ("💥 Chery Tiggo 7 Pro Max 2023 💥\n🔹 1.6 турбо, робот\n🔹 пробег 15 тыс\n🔹 1 владелец\n"
            "🔹 максимальная комплектация: панорама, вентиляция, камера 360\n💵 2 350 000 руб\n🏙 Москва\n"
            "✉️ @tiggo_sale")
    car = extract(text)
    assert car.model_dump(include={"brand", "model", "year", "price", "mileage", "transmission",
                                   "engine_volume", "owners", "city"}) == {
        "brand": "Chery", "model": "Tiggo 7 Pro Max", "year": 2023, "price": 2_350_000, "mileage": 15_000,
        "transmission": "robot", "engine_volume": "1.6", "owners": 1, "city": "Москва"}


# ------------------------------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize("text", [
    "🔥 СРОЧНО! Toyota Camry 2015, 2.5L, пробег 120к. Один хозяин, без ДТП. 1.2 млн. Тел: +7 916 555-12-34",
    "Продам BMW 3 серии 2008 года, 2.5 автомат. Пробег 150к, 2 владельца. Цена 850 тыс. Пишите в ЛС",
    "В продаже LADA XRAY Cross 2019 г.\nМКПП\nПробег 54 000 км\nЦена 1 050 000 ₽\nАвтосалон «Мотор», г. Пенза",
])
def test_clear_sales_are_confident(text: str) -> None:
    verdict = classify(text)
    assert verdict.is_sale is True
    assert verdict.confidence >= 0.9
    assert verdict.reason.startswith("Объявление о продаже")


@pytest.mark.parametrize(("text", "kind"), [
    ("Куплю авто до 500 тыс. Рассмотрю Ладу, Рено, Хендай.", "запрос покупателя"),
    ("Ищу Toyota Camry 2015-2017, пробег до 150 тыс, один-два владельца. Бюджет 1.5 млн.", "запрос покупателя"),
    ("Посоветуйте, что лучше взять за 1 млн: Солярис или Поло?", "вопрос"),
    ("ВЫКУП АВТО ДОРОГО! Битые, кредитные. 📞 8 800 555 35 35", "реклама услуг"),
    ("Шиномонтаж 24/7 на Ленина 45. Сезонная переобувка от 2000 р.", "реклама услуг"),
    ("Автосервис «Гараж»: ремонт АКПП, диагностика, замена масла.", "реклама услуг"),
    ("Подбор авто под ключ. Проверим до 10 машин, автотека, толщиномер.", "реклама услуг"),
    ("Запчасти б/у на Камри 40, 50, 55. Двигатели, КПП, кузовщина.", "запчастей"),
    ("Продам комплект зимней резины R17 на литых дисках от Kia Sportage. Цена 45 000.", "запчастей"),
    ("Продаю двигатель 1.6 от Гранты, пробег 60 тыс, с навесным. Цена 55 000.", "запчастей"),
    ("АвтоВАЗ запустил производство Lada Iskra. Стартовая цена — 1 200 000 рублей.", "новость"),
    ("С 1 сентября утильсбор вырастет ещё на 20%, сообщает Минпромторг.", "новость"),
])
def test_non_sales(text: str, kind: str) -> None:
    verdict = classify(text)
    assert verdict.is_sale is False
    assert verdict.confidence >= 0.75
    assert kind in verdict.reason


def test_confidence_is_lower_when_unsure() -> None:
    terse = classify("Рав4 2015г 1,2 млн")  # a sale, but with little evidence
    vague = classify("Продам авто. Все вопросы в лс")  # intent but no car
    clear = classify("Продам Камри 2015, 2.5 АКПП, пробег 150к, 1 хозяин, цена 1.2 млн. Казань")
    assert terse.is_sale is True and terse.confidence < 0.9
    assert vague.is_sale is False and vague.confidence < 0.9
    assert clear.confidence > terse.confidence
    assert all(0.0 <= v.confidence <= 1.0 for v in (terse, vague, clear))


def test_analyse_runs_the_whole_pipeline() -> None:
    sale = analyse("Продам Хендай Солярис 2017, 1.6 АКПП, пробег 98 тыс. Климат, подогрев сидений. "
                   "Цена 1 050 000 руб. Казань")
    assert sale.backend == "rules"
    assert sale.car is not None and sale.car.model == "Solaris" and sale.summary
    other = analyse("Куплю Ниву в любом состоянии. 89990001122")
    assert other.car is None and other.summary is None and other.classification.is_sale is False


def test_analysis_is_deterministic() -> None:
    text = "Мазда 6 2017 г.в. 2.0 автомат, пробег 95000, 1 хозяин. Кожа, Bose, камера. Цена 1 800 000."
    assert analyse(text) == analyse(text)


# ------------------------------------------------------------------------------------------------
# Summary


SUMMARY_POST = (
    "🚗 Продам BMW 3 серии 2008 года, 2.5 автомат. Пробег 150к, 2 владельца, зеленая автотека. "
    "Кожаный салон, климат-контроль, подогрев сидений. Без вложений. Цена 850 тыс, реальный торг. "
    "Пишите в ЛС @bmw_e90_msk\nМосква"
)


def test_summary_keeps_only_equipment_and_condition() -> None:
    summary = summarize(SUMMARY_POST)
    assert summary == "Оснащение: кожаный салон, климат-контроль, подогрев сидений. Состояние: без вложений."


@pytest.mark.parametrize("forbidden", [
    "BMW", "3 серии", "2008", "2.5", "автомат", "150", "владел", "автотек", "850", "торг", "@", "ЛС",
    "Москва", "🚗",
])
def test_summary_leaves_out_what_the_template_shows(forbidden: str) -> None:
    assert forbidden.lower() not in summarize(SUMMARY_POST).lower()


def test_summary_invents_nothing() -> None:
    """Every word of every summary, apart from the two labels, is a word of its post."""
    for row in _rows(CORPUS) + _rows(STYLES):
        text = row["text"]
        summary = summarize(text)
        if summary == FALLBACK_SUMMARY:
            continue
        words = set(re.findall(r"\w+", text.lower()))
        for word in re.findall(r"\w+", summary.lower()):
            assert word in words or word in ("оснащение", "состояние"), (word, text)
        assert len(summary.split()) <= rules.SUMMARY_MAX_WORDS


def test_summary_fallback_when_nothing_is_stated() -> None:
    assert summarize("Toyota Camry 2015, 2.5L, пробег 120к. 1.2 млн. Тел: +7 916 555-12-34") == FALLBACK_SUMMARY
    assert summarize("") == FALLBACK_SUMMARY


def test_summary_is_capped_at_100_words() -> None:
    text = "Продам Камри 2015. " + ", ".join(f"подогрев зоны {n}" for n in range(80)) + ". Цена 1.2 млн"
    assert len(summarize(text).split()) <= rules.SUMMARY_MAX_WORDS


# ------------------------------------------------------------------------------------------------
# Kinds that generalise: numbers, gearboxes, fuels, what is and is not a sale


@pytest.mark.parametrize(("text", "price", "mileage"), [
    ("Соренто 2012, пробег 165 т.км, цена 1 250 т.р.", 1_250_000, 165_000),  # both in thousands
    ("Форестер 2014, 2.5 вариатор, 160к, 1.55 млн", 1_550_000, 160_000),  # bare thousands before the price
    ("Альбеа 2011 1.4 мкпп 120т 260т Астрахань", 260_000, 120_000),
    ("Солярис 2015, 1.4 МКПП, 160 тыс. пробег, цена 690 т.р.", 690_000, 160_000),  # the word after the number
    ("Мокка 2013, пробег: 120, цена: 890, торг", 890_000, 120_000),  # a bare price after "цена"
    ("Аккорд 2011, цена 1 100 000 р, торг до 1 050 000, пробег 170 000", 1_100_000, 170_000),  # a floor
    ("Corolla 2016, 104 000 км\n~~1 490 000~~ → 1 390 000 ₽", 1_390_000, 104_000),  # crossed out
    ("Duster 2018, 76 т.км. Было 1 600 000 — стало 1 520 000 ₽", 1_520_000, 76_000),
    ("Tucson 2021, 29 т.км. Платёж 39 000 в месяц! Полная цена 2 990 000 ₽", 2_990_000, 29_000),  # credit
    ("Q5 2013, пробег 180 т.км. Вложил 250 т.р. за год. Прошу 1 750 т.р.", 1_750_000, 180_000),  # invested
])
def test_price_and_mileage_kinds(text: str, price: int, mileage: int) -> None:
    car = extract(text)
    assert (car.price, car.mileage) == (price, mileage)


@pytest.mark.parametrize(("text", "year"), [
    ("Продам Поло седан 14 года, 1.6 автомат", 2014), ("Гранту 15 г.в., 1.6 мех.", 2015),
    ("Пассат Б7 12 год 1.8 TSI", 2012), ("Рено Дастер 15г 2.0", 2015), ("Королла 99 г.в.", 1999),
    ("Qashqai J11. Вариатор, 2.0, 4WD. Пробег 88 000. Цена 1 780 000. Год выпуска 2016.", 2016),  # far
    ("Весту купил в 19 году, владею 3 года", None), ("Датсун Он-До 2023, 1.4", 2023),
])
def test_short_and_far_years(text: str, year: int | None) -> None:
    assert extract(text).year == year


@pytest.mark.parametrize(("text", "transmission"), [
    ("2.2 CRDi, 8АКПП, 4WD", "automatic"), ("2.5 AT8, пробег", "automatic"), ("АКПП 6, полный привод", "automatic"),
    ("4x4 AT, пробег", "automatic"), ("3.5 V6, АКПП Aisin 6ст", "automatic"), ("Geartronic", "automatic"),
    ("8-ст автомат ZF", "automatic"), ("1.5T / 7DCT", "robot"), ("1.8 TSI DSG7", "robot"), ("1.6 АМТ", "robot"),
    ("PDK", "robot"), ("МТ5, пробег", "manual"), ("4 ступки", "manual"), ("вариатор IVT", "variator"),
    ("X-Tronic CVT", "variator"), ("Lineartronic", "variator"), ("мультитроник", "variator"),
])
def test_gearboxes_by_count_maker_and_abbreviation(text: str, transmission: str) -> None:
    assert extract(text).transmission == transmission


@pytest.mark.parametrize(("text", "volume"), [
    ("Kawasaki Ninja 400 2019, 400 кубов, пробег 9 тыс.", "0.4"), ("Suzuki V-Strom, 1000 см3", "1.0"),
    ("Sportster 1200 2012, 1200 cc", "1.2"),
])
def test_motorcycle_displacement(text: str, volume: str) -> None:
    assert extract(text).engine_volume == volume


@pytest.mark.parametrize("text", [
    "Kia Rio 2019, 1.6 AT, 68 тыс. км, цена 1 320 000 ₽", "Chery Tiggo 4 Pro 2023, 1.5 CVT, 14 000 км",
    "Mazda CX-5 2019, 2.5 АКПП, пробег 74 тыс. км", "Geely Monjaro 2023 2.0 турбо, 8АКПП",
])
def test_no_fuel_is_guessed(text: str) -> None:
    assert extract(text).fuel is None


@pytest.mark.parametrize(("text", "kind"), [
    ("ПРОДАН ✅ Kia Sportage 2018 уехал в Тюмень. Спасибо покупателю!", "уже продан"),
    ("Машина продана, всем спасибо. Звонки больше не принимаю.", "уже продан"),
    ("Подскажите, сколько можно выручить за Лансер 10 2008 года, 1.5 механика, пробег 200 т.км?", "вопрос о цене"),
    ("Оцените авто: Skoda Octavia 2015, 1.6 MPI, механика, пробег 140 000.", "вопрос о цене"),
    ("Новинка! Changan UNI-S уже в продаже у официальных дилеров. Цена от 2 899 900 ₽.", "новость"),
    ("Пригоним автомобиль из Кореи под ключ: Kia, Hyundai, Genesis. Сроки 30–45 дней.", "пригон"),
])
def test_not_sales_although_a_car_is_described(text: str, kind: str) -> None:
    verdict = classify(text)
    assert verdict.is_sale is False and kind in verdict.reason


@pytest.mark.parametrize("text", [
    "Под заказ из Кореи 🇰🇷 Kia Carnival 2021, 2.2 дизель, 8АКПП, пробег 39 000 км. Цена под ключ 4 350 000 ₽",
    "Из Японии под заказ: Honda Stepwgn 2018, 1.5 турбо, вариатор, 61 тыс. км. Под ключ 2 350 000 руб.",
    "Toyota Wish 2010, 1.8 AT, 150 000 км, 790 000 ₽, Чита",  # almost no sale vocabulary
])
def test_one_specific_car_is_a_sale(text: str) -> None:
    assert classify(text).is_sale is True


def test_a_multi_car_list_describes_its_first_car() -> None:
    car = extract("В наличии:\n1) Hyundai Solaris 2018 1.6 MT 90 т.км — 1 050 т.р.\n"
                  "2) VW Polo 2017 1.6 AT 110 т.км — 1 020 т.р.\nКемерово")
    assert (car.brand, car.model, car.year, car.price, car.mileage, car.transmission, car.city) == (
        "Hyundai", "Solaris", 2018, 1_050_000, 90_000, "manual", "Кемерово")


# ------------------------------------------------------------------------------------------------
# The labelled corpus


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


FIELDS = ("brand", "model", "year", "price", "mileage", "transmission", "engine_volume", "fuel", "owners", "city")


def test_corpus_shape() -> None:
    rows = _rows(CORPUS)
    sales = [r for r in rows if r["is_sale"]]
    assert len(rows) >= 70 and len(sales) >= 45 and len(rows) - len(sales) >= 25
    assert len({r["text"] for r in rows}) == len(rows)
    for row in sales:
        assert set(FIELDS) <= set(row["expected"]), row["text"]
    assert len({r["expected"]["brand"] for r in sales}) >= 20


@pytest.mark.parametrize("path", [CORPUS, HOLDOUT, STYLES, SYNTHETIC], ids=["corpus", "holdout", "styles",
                                                                     "synthetic"])
def test_accuracy_thresholds(path: Path) -> None:
    report = load_bench().evaluate(path)
    assert report.classification_accuracy >= 0.97, report.errors
    for name, score in report.fields.items():
        assert score.accuracy >= 0.95, (name, [e for e in report.errors if f" {name}:" in e])
        assert score.stated_accuracy >= 0.90, (name, [e for e in report.errors if f" {name}:" in e])


@pytest.mark.parametrize("path", [UNSEEN, UNSEEN_SECOND], ids=["unseen", "unseen-second"])
def test_unseen_sets_hold_the_target(path: Path) -> None:
    """The sets nobody tunes on: their figures only (no misses are printed, so reading a failure here
    does not turn them into tuning sets). Target: classification >= 97%, every field >= 95% (when
    written: 98.0% and at least 96.3% per field; the second set 100% and at least 96.7%)."""
    report = load_bench().evaluate(path)
    figures = {name: round(score.accuracy, 3) for name, score in report.fields.items()}
    assert report.classification_accuracy >= 0.97, round(report.classification_accuracy, 3)
    assert min(figures.values()) >= 0.95, figures


def test_the_corpus_is_four_times_what_it_was() -> None:
    """114 labelled posts before (corpus and holdout); now at least four times as many written by hand,
    in more styles, and the generated ones on top."""
    by_hand = [row for path in (CORPUS, HOLDOUT, STYLES, UNSEEN, UNSEEN_SECOND) for row in _rows(path)]
    rows = by_hand + _rows(SYNTHETIC)
    assert len(by_hand) >= 4 * 114
    assert len({row["text"] for row in rows}) == len(rows)


@pytest.mark.parametrize("text", ["", "   ", "🔥🔥🔥", "9" * 5000, "1" * 13 + " руб", "млн млн 5 млн", "г. ", "Город:"])
def test_odd_input_never_raises(text: str) -> None:
    analysis = analyse(text)
    assert 0.0 <= analysis.classification.confidence <= 1.0
    assert extract(text).price is None or extract(text).price <= 300_000_000
