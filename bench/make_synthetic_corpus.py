"""Write tests/cars_bot/ai/synthetic.jsonl: labelled posts generated from the make/model catalogue.

A third "hand" for the rules backend's corpus, next to the hand-written ones: every post is built
from a channel-style template (dealer emoji list, one-liner, hashtags, credit offer, reduced price,
import to order, trade-in, swap; sold notices, price questions, buyer requests, news and parts as
non-sales) with a make and model drawn from ``cars_bot/data/car_catalogue.json`` (Latin or Cyrillic
spelling) and the numbers written in one of the many ways people write them. The labels are exact
by construction. Deterministic (seeded)::

    python bench/make_synthetic_corpus.py            # rewrite the file
    python bench/make_synthetic_corpus.py --count 400 --seed 7 --out /tmp/more.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from cars_bot.ai.catalogue import catalogue  # noqa: E402

OUT = ROOT / "tests" / "cars_bot" / "ai" / "synthetic.jsonl"
MOTORCYCLES = {"Yamaha", "Kawasaki", "Ducati", "Harley-Davidson", "KTM"}
CITIES = ("Москва", "Санкт-Петербург", "Казань", "Екатеринбург", "Новосибирск", "Самара", "Уфа", "Пермь",
          "Краснодар", "Воронеж", "Тюмень", "Иркутск", "Омск", "Тула", "Калуга", "Ярославль", "Барнаул",
          "Челябинск", "Владивосток", "Хабаровск", "Сочи", "Ижевск", "Киров", "Пенза", "Саратов")
TRANSMISSIONS = {
    "automatic": ("АКПП", "автомат", "6АКПП", "AT", "АКПП 8", "8-ст. автомат", "Aisin"),
    "manual": ("МКПП", "механика", "МТ5", "МКПП 6", "мех."),
    "robot": ("робот", "DSG", "7DCT", "DSG7", "AMT", "робот DCT"),
    "variator": ("вариатор", "CVT", "вариатор CVT"),
}
FUELS = {"petrol": ("бензин",), "diesel": ("дизель",), "hybrid": ("гибрид",), "gas": ("ГБО", "газ/бензин")}


def _spelling(rng: random.Random, canonical: str, aliases: tuple[str, ...]) -> str:
    cyrillic = [a for a in aliases if re.search(r"[а-я]", a) and len(a) > 3]
    if cyrillic and rng.random() < 0.4:
        return rng.choice(cyrillic).title()
    return canonical


def _n(value: int) -> str:
    return f"{value:,}".replace(",", " ")


def _price(rng: random.Random, value: int, labelled: bool) -> str:
    thousands = value // 1000
    forms = [f"{value:,} ₽".replace(",", " "), f"{value:,} руб.".replace(",", " "), f"{thousands} т.р.",
             f"{thousands} тыс. руб", f"{value / 1e6:.2f}".rstrip("0").rstrip(".").replace(".", ",") + " млн"]
    if value % 100_000 == 0:
        forms.append(f"{value / 1e6:g} млн".replace(".", ","))
    if labelled:
        forms += [f"{thousands}к", f"{value:,}".replace(",", " ")]
    return rng.choice(forms)


def _mileage(rng: random.Random, km: int) -> str:
    thousands = km // 1000
    return rng.choice([f"пробег {km:,} км".replace(",", " "), f"пробег {thousands} т.км", f"{thousands} тыс. км",
                       f"пробег {thousands}к", f"{km} км", f"{thousands} тыс. км пробег", f"пробег {thousands} тыс"])


def _car(rng: random.Random) -> dict[str, object]:
    makes = [m for m in catalogue().makes if m.name not in MOTORCYCLES]
    make = rng.choice(makes)
    model = rng.choice(make.models)
    year = rng.randint(2005, 2024)
    km = rng.randrange(5, 300) * 1000
    price = rng.randrange(30, 900) * 10_000
    transmission = rng.choice([*TRANSMISSIONS, None])
    fuel = rng.choice([*FUELS, None, None, None])
    volume = rng.choice([None, "1.4", "1.5", "1.6", "1.8", "2.0", "2.4", "2.5", "3.0"])
    owners = rng.choice([None, None, 1, 2, 3])
    return {"make": make, "model": model, "year": year, "km": km, "price": price, "transmission": transmission,
            "fuel": fuel, "volume": volume, "owners": owners, "city": rng.choice(CITIES)}


def _sale(rng: random.Random) -> dict[str, object]:
    car = _car(rng)
    make, model = car["make"], car["model"]
    brand = _spelling(rng, make.name, make.aliases)  # type: ignore[attr-defined]
    name = _spelling(rng, model.name, model.aliases)  # type: ignore[attr-defined]
    specs = ", ".join(x for x in (
        car["volume"],
        rng.choice(TRANSMISSIONS[car["transmission"]]) if car["transmission"] else None,  # type: ignore[index]
        rng.choice(FUELS[car["fuel"]]) if car["fuel"] else None)  # type: ignore[index]
        if x)
    owners = "" if car["owners"] is None else rng.choice(
        [f"{car['owners']} владелец" if car["owners"] == 1 else f"{car['owners']} владельца",
         f"{car['owners']} хоз.", f"владельцев: {car['owners']}"])
    mileage, city, year = _mileage(rng, car["km"]), car["city"], car["year"]  # type: ignore[arg-type]
    price = _price(rng, car["price"], labelled=True)  # type: ignore[arg-type]
    style = rng.choice(["dealer", "oneline", "hashtags", "credit", "reduced", "import", "swap", "labelled"])
    label_city: str | None = city  # type: ignore[assignment]
    label_owners = car["owners"] if style in ("dealer", "oneline", "hashtags", "swap") else None
    if style == "dealer":
        lines = [f"🚘 {brand} {name} {year}", specs and f"▪️ {specs}", f"▪️ {mileage}", owners and f"▪️ {owners}",
                 f"💰 Цена: {price}", f"📍 {city}"]
        text = "\n".join(line for line in lines if line)
    elif style == "oneline":
        text = f"Продам {brand} {name} {year}, {specs + ', ' if specs else ''}{mileage}, " \
               f"{owners + ', ' if owners else ''}цена {price}. {city}"
    elif style == "hashtags":
        tag = str(city).replace(" ", "_").replace("-", "_")
        text = f"#продам #{make.name.lower().replace(' ', '').replace('-', '')}\n{brand} {name} {year}, " \
               f"{specs + ', ' if specs else ''}{mileage}. {owners + '. ' if owners else ''}Цена {price} #{tag}"
        label_city = city if " " not in city and "-" not in city else None  # type: ignore[operator]
    elif style == "credit":
        monthly = rng.randrange(9, 60) * 1000
        text = f"{brand} {name} {year}\n{specs}\n{mileage}\nВ кредит от {_n(monthly)} ₽/мес, первый взнос от 0%\n" \
               f"Полная стоимость {price}\n{city}"
    elif style == "reduced":
        old = car["price"] + rng.randrange(1, 20) * 10_000  # type: ignore[operator]
        text = f"Цена снижена! {brand} {name} {year}, {specs + ', ' if specs else ''}{mileage}. " \
               f"Было {_n(old)}, теперь {price}. {city}"
    elif style == "import":
        country = rng.choice(["Кореи", "Китая", "Японии", "Европы"])
        text = f"Под заказ из {country}: {brand} {name} {year}, {specs + ', ' if specs else ''}{mileage}. " \
               f"Стоимость под ключ {price}. Срок доставки 30–45 дней."
        label_city = None
    elif style == "swap":
        text = f"Продам или обменяю {brand} {name} {year}, {specs + ', ' if specs else ''}{mileage}. " \
               f"{owners + '. ' if owners else ''}Цена {price}, рассмотрю обмен с доплатой. {city}"
    else:
        text = f"{brand} {name}\nГод выпуска: {year}\n{('Двигатель: ' + specs) if specs else ''}\n" \
               f"Пробег: {_n(car['km'])} км\nЦена: {price}\nГород: {city}"
    expected = {"brand": make.name, "model": model.name, "year": year, "price": car["price"],  # type: ignore[attr-defined]
                "mileage": car["km"], "transmission": car["transmission"], "engine_volume": car["volume"],
                "fuel": car["fuel"], "owners": label_owners, "city": label_city, "autoteka_status": "unknown",
                "market_price": None}
    return {"text": text, "is_sale": True, "expected": expected}


def _other(rng: random.Random) -> dict[str, object]:
    car = _car(rng)
    make, model = car["make"], car["model"]
    name = f"{_spelling(rng, make.name, make.aliases)} {_spelling(rng, model.name, model.aliases)}"  # type: ignore[attr-defined]
    km, year, price = car["km"], car["year"], car["price"]
    text = rng.choice([
        f"ПРОДАНО ✅ {name} {year} уехал к новому владельцу. Спасибо за доверие!",
        f"Автомобиль продан: {name} {year}. Объявление неактуально.",
        f"Подскажите, сколько просить за {name} {year} с пробегом {_n(km)} км? Хочу продавать.",
        f"Оцените, пожалуйста, {name} {year}, пробег {km // 1000} тыс. Сколько реально за него дадут?",
        f"Куплю {name} не старше {year} года, бюджет до {_n(price)} ₽.",
        f"Ищу {name}, пробег до {km // 1000} т.км, рассмотрю варианты.",
        f"Новинка: {name} уже у официальных дилеров, цена от {_n(price)} ₽.",
        f"Продам комплект зимней резины от {name}, R17, цена {_n(price // 100)} ₽.",
        f"Привезём {name} под заказ из Кореи, Японии или Китая. Расчёт стоимости бесплатно!",
        f"Стоит ли брать {name} {year}? Поделитесь опытом владения.",
    ])
    return {"text": text, "is_sale": False}


def generate(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = [(_sale if rng.random() < 0.7 else _other)(rng) for _ in range(count)]
    seen: set[str] = set()
    return [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]  # type: ignore[func-returns-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = generate(args.count, args.seed)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} posts ({sum(bool(r['is_sale']) for r in rows)} sales) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
