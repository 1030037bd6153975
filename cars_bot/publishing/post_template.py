"""The channel post template (prior-system.md section 6) in Telegram HTML, within Telegram's limits.

Every inserted value is HTML-escaped: brand, model, equipment and AI text are data, never markup.
Lengths are counted as Telegram counts them: the visible text after the HTML is parsed into entities,
in UTF-16 code units (an emoji outside the BMP counts 2), which is never less than the character count.
When a post is too long, the equipment/summary paragraph is shortened at a word boundary with "…"
(then the price justification, if it alone is huge); the shortening happens on the plain text before
escaping, so a cut can never fall inside a tag or an entity, and the other sections always survive.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096
MAX_ALBUM_ITEMS = 10
DEFAULT_BRAND = "Автомобиль"
DEFAULT_BOT_USERNAME = "bot"
ELLIPSIS = "…"

# Database columns are bounded on PostgreSQL but not on SQLite; bound them here so that only the
# free-text paragraphs can ever need shortening.
_MAX_NAME = 100
_MAX_ENGINE = 20
# Below this many characters a shortened equipment paragraph says nothing; the justification gives way.
_MIN_EQUIPMENT = 40

TRANSMISSION_RU = {
    "automatic": "Автомат",
    "manual": "Механика",
    "robot": "Робот",
    "variator": "Вариатор",
}

_TAG = re.compile(r"<[^>]*>")


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    """The Russian plural form for `n`: 1 владелец, 2 владельца, 5/11/111 владельцев, 21 владелец."""
    n = abs(int(n))
    if 11 <= n % 100 <= 14:
        return many
    last = n % 10
    if last == 1:
        return one
    if 2 <= last <= 4:
        return few
    return many


def format_thousands(n: int) -> str:
    """An integer with a space between thousands: 1500000 -> "1 500 000"."""
    return f"{int(n):,}".replace(",", " ")


def format_rub(n: int) -> str:
    """Roubles as the channel shows them: 850000 -> "850 000₽"."""
    return f"{format_thousands(n)}₽"


def telegram_length(text: str) -> int:
    """Length of plain text as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def visible_length(html_text: str) -> int:
    """Length of Telegram HTML after parsing: tags removed, entities decoded, in UTF-16 units."""
    return telegram_length(html.unescape(_TAG.sub("", html_text)))


def shorten(text: str, budget: int) -> str:
    """`text` cut to at most `budget` UTF-16 units at a word boundary, ending with "…" when cut."""
    if telegram_length(text) <= budget:
        return text
    if budget <= 0:
        return ""
    room = budget - telegram_length(ELLIPSIS)
    used = 0
    end = len(text)
    for index, char in enumerate(text):
        size = telegram_length(char)
        if used + size > room:
            end = index
            break
        used += size
    cut = text[:end]
    if end < len(text) and not text[end].isspace():
        boundary = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
        if boundary > 0:
            cut = cut[:boundary]
    cut = cut.rstrip(" \t\n,;:—–-")
    return cut + ELLIPSIS


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _value(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None) if obj is not None else None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).strip().lower() or None


def _engine_text(engine: Any) -> str | None:
    if engine is None:
        return None
    text = str(engine).strip()[:_MAX_ENGINE]
    text = re.sub(r"\s*(л|l|L|литра?)\.?$", "", text).strip()
    return f"{text}л" if text else None


def _header(car: Any) -> str:
    brand = (_value(car, "brand") or DEFAULT_BRAND)[:_MAX_NAME]
    model = _value(car, "model")
    title = f"{brand} {str(model)[:_MAX_NAME]}" if model else brand
    return f"🚗 <b>{_e(title)}</b>"


def _spec_line(car: Any) -> str | None:
    parts: list[str] = []
    engine = _engine_text(_value(car, "engine_volume"))
    if engine:
        parts.append(engine)
    gearbox = TRANSMISSION_RU.get(_enum_value(_value(car, "transmission")) or "")
    if gearbox:
        parts.append(gearbox)
    year = _value(car, "year")
    if year:
        parts.append(str(year))
    if not parts:
        return None
    return "📋 " + " • ".join(_e(p) for p in parts)


def _history(car: Any) -> str:
    bullets: list[str] = []
    owners = _value(car, "owners")
    if isinstance(owners, int) and owners > 0:
        bullets.append(f"• {owners} {plural_ru(owners, 'владелец', 'владельца', 'владельцев')}")
    mileage = _value(car, "mileage")
    if isinstance(mileage, int) and mileage >= 0:
        bullets.append(f"• Пробег: {format_thousands(mileage)} км")
    autoteka = _enum_value(_value(car, "autoteka_status"))
    if autoteka == "green":
        bullets.append("• Автотека: ✅ чистая")
    elif autoteka == "has_accidents":
        bullets.append("• Автотека: ⚠️ есть ДТП")
    if not bullets:
        bullets.append("• Данные уточняются")
    return "📊 <b>История автомобиля:</b>\n" + "\n".join(bullets)


def _price_lines(car: Any) -> str:
    price = _value(car, "price")
    market = _value(car, "market_price")
    if not isinstance(price, int) or price <= 0:
        lines = ["💰 <b>Цена: уточняется</b>"]
        if isinstance(market, int) and market > 0:
            lines.append(f"📊 Рыночная цена: {format_rub(market)}")
        return "\n".join(lines)
    lines = [f"💰 <b>Цена: {format_rub(price)}</b>"]
    if isinstance(market, int) and market > 0:
        if price < market:
            lines.append(f"📉 Рыночная цена: {format_rub(market)} (выгода {format_rub(market - price)})")
        else:
            lines.append(f"📊 Рыночная цена: {format_rub(market)}")
    return "\n".join(lines)


def contact_link(bot_username: str | None, post_id: int) -> str:
    """The bot deep link that asks for this post's seller contact."""
    bot = (bot_username or DEFAULT_BOT_USERNAME).strip().lstrip("@") or DEFAULT_BOT_USERNAME
    return f"https://t.me/{quote(bot, safe='')}?start=contact_{int(post_id)}"


def render_post(
    car: Any,
    summary: str | None,
    *,
    post_id: int,
    bot_username: str | None,
    has_media: bool,
    limit: int | None = None,
) -> str:
    """The channel post for `car` (a CarData or any object with its attributes, or None) in HTML.

    `summary` is the generated equipment/condition text (falls back to `car.equipment`). `limit` is
    the visible-length limit; by default 1024 for a media caption and 4096 for a text message.
    """
    if limit is None:
        limit = CAPTION_LIMIT if has_media else TEXT_LIMIT
    equipment = (summary or "").strip() or _value(car, "equipment") or "Информация уточняется у продавца"
    justification = _value(car, "price_justification") or ""

    head = [_header(car)]
    spec = _spec_line(car)
    if spec:
        head.append(spec)
    link_text = "Получить контакты" if has_media else "Получить контакты и ссылку на оригинальный пост с медиа"
    link = f'📞 <a href="{_e(contact_link(bot_username, post_id))}">{link_text}</a>'

    def assemble(equipment_text: str, justification_text: str) -> str:
        paragraphs = [
            "\n".join(head),
            _history(car),
            "⚙️ <b>Комплектация:</b>\n" + _e(equipment_text),
            _price_lines(car),
        ]
        if justification_text:
            paragraphs.append(_e(justification_text))
        paragraphs.append(link)
        return "\n\n".join(paragraphs)

    text = assemble(equipment, justification)
    if visible_length(text) <= limit:
        return text
    # 1. shorten the equipment paragraph alone
    budget = limit - visible_length(assemble("", justification))
    if budget >= min(_MIN_EQUIPMENT, telegram_length(equipment)):
        return assemble(shorten(equipment, budget), justification)
    # 2. the justification is huge too: keep a readable start of the equipment, shorten the justification
    short_equipment = shorten(equipment, _MIN_EQUIPMENT)
    budget = limit - visible_length(assemble(short_equipment, ""))
    justification_budget = budget - 2  # its paragraph separator
    if justification_budget >= _MIN_EQUIPMENT:
        return assemble(short_equipment, shorten(justification, justification_budget))
    # 3. no room for it at all (a tiny limit): drop the justification, give everything to the equipment
    text = assemble(shorten(equipment, max(limit - visible_length(assemble("", "")), 0)), "")
    if visible_length(text) > limit:
        raise ValueError(f"post {post_id} cannot fit in {limit} characters even with its paragraphs shortened")
    return text
