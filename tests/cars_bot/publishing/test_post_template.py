"""The post template: plurals, money, escaping, Telegram's length limits."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import pytest

from cars_bot.db.models import AutotekaStatus, Transmission
from cars_bot.publishing.post_template import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    format_rub,
    plural_ru,
    render_post,
    shorten,
    visible_length,
)


def car(**values: Any) -> SimpleNamespace:
    base = {"brand": "BMW", "model": "3 серии", "year": 2015, "price": 850_000, "mileage": 150_000,
            "engine_volume": "2.5", "transmission": Transmission.AUTOMATIC, "owners": 2,
            "autoteka_status": AutotekaStatus.GREEN, "equipment": None, "market_price": None,
            "price_justification": None}
    base.update(values)
    return SimpleNamespace(**base)


def render(c: Any, summary: str | None = None, *, has_media: bool = False, **kw: Any) -> str:
    return render_post(c, summary, post_id=42, bot_username="cars_bot", has_media=has_media, **kw)


class TagBalance(HTMLParser):
    """Fails on an unbalanced or unknown tag; collects the visible text."""

    ALLOWED = frozenset({"b", "a"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.ALLOWED, tag
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_well_formed(html_text: str) -> str:
    parser = TagBalance()
    parser.feed(html_text)
    parser.close()
    assert parser.stack == []
    # every "&" starts a complete entity: nothing was cut in the middle of one
    for match in re.finditer(r"&", html_text):
        assert re.match(r"&(amp|lt|gt|quot|#x27);", html_text[match.start():]), html_text[match.start():][:10]
    return "".join(parser.text)


@pytest.mark.parametrize(
    ("n", "word"),
    [
        (0, "владельцев"), (1, "владелец"), (2, "владельца"), (3, "владельца"), (4, "владельца"),
        (5, "владельцев"), (10, "владельцев"), (11, "владельцев"), (12, "владельцев"), (13, "владельцев"),
        (14, "владельцев"), (15, "владельцев"), (20, "владельцев"), (21, "владелец"), (22, "владельца"),
        (24, "владельца"), (25, "владельцев"), (101, "владелец"), (104, "владельца"), (111, "владельцев"),
        (112, "владельцев"), (114, "владельцев"), (121, "владелец"), (1001, "владелец"), (1011, "владельцев"),
    ],
)
def test_plural_forms(n: int, word: str) -> None:
    assert plural_ru(n, "владелец", "владельца", "владельцев") == word


def test_owner_bullet_uses_the_plural() -> None:
    assert "• 21 владелец" in render(car(owners=21))
    assert "• 22 владельца" in render(car(owners=22))
    assert "• 11 владельцев" in render(car(owners=11))


@pytest.mark.parametrize(("n", "text"), [(0, "0₽"), (999, "999₽"), (850_000, "850 000₽"),
                                         (1_200_000, "1 200 000₽")])
def test_format_rub(n: int, text: str) -> None:
    assert format_rub(n) == text


def test_template_sections_in_order() -> None:
    text = render(car(market_price=1_000_000, price_justification="Ниже рынка из-за пробега"),
                  "Кожа, климат, камера")
    expected = [
        "🚗 <b>BMW 3 серии</b>",
        "📋 2.5л • Автомат • 2015",
        "📊 <b>История автомобиля:</b>",
        "• 2 владельца",
        "• Пробег: 150 000 км",
        "• Автотека: ✅ чистая",
        "⚙️ <b>Комплектация:</b>\nКожа, климат, камера",
        "💰 <b>Цена: 850 000₽</b>",
        "📉 Рыночная цена: 1 000 000₽ (выгода 150 000₽)",
        "Ниже рынка из-за пробега",
        '📞 <a href="https://t.me/cars_bot?start=contact_42">',
    ]
    positions = [text.index(part) for part in expected]
    assert positions == sorted(positions)
    assert_well_formed(text)


def test_defaults_and_missing_parts() -> None:
    text = render(car(brand=None, model=None, engine_volume=None, transmission=None, year=None, owners=None,
                      mileage=None, autoteka_status=AutotekaStatus.UNKNOWN, price=None))
    assert text.startswith("🚗 <b>Автомобиль</b>\n\n📊")  # no spec line at all
    assert "• Данные уточняются" in text
    assert "Автотека" not in text
    assert "Информация уточняется у продавца" in text
    assert "💰 <b>Цена: уточняется</b>" in text


def test_spec_line_leaves_out_missing_parts_and_accidents_are_shown() -> None:
    text = render(car(engine_volume=None, transmission=Transmission.VARIATOR,
                      autoteka_status=AutotekaStatus.HAS_ACCIDENTS))
    assert "📋 Вариатор • 2015" in text
    assert "• Автотека: ⚠️ есть ДТП" in text


def test_equipment_falls_back_to_the_extracted_equipment() -> None:
    assert "⚙️ <b>Комплектация:</b>\nЛюк, подогрев" in render(car(equipment="Люк, подогрев"), None)
    assert "Сводка" in render(car(equipment="Люк"), "Сводка")


def test_market_price_above_the_asking_price() -> None:
    text = render(car(price=1_000_000, market_price=900_000))
    assert "📊 Рыночная цена: 900 000₽" in text
    assert "выгода" not in text


def test_link_text_depends_on_media() -> None:
    assert ">Получить контакты</a>" in render(car(), has_media=True)
    assert ">Получить контакты и ссылку на оригинальный пост с медиа</a>" in render(car(), has_media=False)


def test_every_inserted_value_is_escaped() -> None:
    nasty = car(brand='<script>alert("x")</script>', model="A&B 'Sport'", engine_volume="<2.0>",
                equipment=None, price_justification='Цена < рынка & "торг"')
    text = render(nasty, 'Кожа & <b>люк</b> "Premium"')
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "A&amp;B &#x27;Sport&#x27;" in text
    assert "Кожа &amp; &lt;b&gt;люк&lt;/b&gt; &quot;Premium&quot;" in text
    assert "Цена &lt; рынка &amp; &quot;торг&quot;" in text
    visible = assert_well_formed(text)
    assert '<script>alert("x")</script>' in visible  # shown as text, as the seller wrote it


def test_bot_username_cannot_break_the_link() -> None:
    text = render_post(car(), None, post_id=7, bot_username='evil"><b>', has_media=False)
    assert_well_formed(text)
    assert 'href="https://t.me/evil%22%3E%3Cb%3E?start=contact_7"' in text


@pytest.mark.parametrize(("has_media", "limit"), [(True, CAPTION_LIMIT), (False, TEXT_LIMIT)])
def test_long_equipment_is_shortened_at_a_word_boundary(has_media: bool, limit: int) -> None:
    words = ["кожа", "&", "<люк>", "климат-контроль", '"камера"', "подогрев"]
    equipment = " ".join(words[i % len(words)] for i in range(3000))
    text = render(car(market_price=1_000_000, price_justification="Хорошая цена"), equipment,
                  has_media=has_media)
    assert visible_length(text) <= limit
    visible = assert_well_formed(text)
    # the shortened paragraph ends with a whole word and the ellipsis
    paragraph = visible.split("Комплектация:\n", 1)[1].split("\n\n", 1)[0]
    assert paragraph.endswith("…")
    assert paragraph[:-1].split(" ")[-1] in words
    # the other sections all survive
    for part in ("🚗 BMW 3 серии", "📋 2.5л • Автомат • 2015", "• 2 владельца", "💰 Цена: 850 000₽",
                 "📉 Рыночная цена", "Хорошая цена", "📞 Получить контакты"):
        assert part in visible


def test_huge_justification_and_names_still_fit_a_caption() -> None:
    text = render(car(brand="B" * 3000, model="M" * 3000, price_justification="дёшево " * 2000),
                  "кожа " * 2000, has_media=True)
    assert visible_length(text) <= CAPTION_LIMIT
    visible = assert_well_formed(text)
    assert "💰 Цена: 850 000₽" in visible and "📞 Получить контакты" in visible


def test_emoji_count_as_two_utf16_units() -> None:
    text = render(car(), "🔥" * 2000, has_media=True)
    assert len(text.encode("utf-16-le")) // 2 >= visible_length(text)
    assert visible_length(text) <= CAPTION_LIMIT


def test_a_short_post_is_not_touched() -> None:
    text = render(car(), "Кожа")
    assert "…" not in text


def test_shorten() -> None:
    assert shorten("один два три", 100) == "один два три"
    assert shorten("один два три", 9) == "один два…"
    assert shorten("одиндватри", 5) == "один…"
    assert shorten("abc", 0) == ""
