"""Normalisation and hashing for de-duplicating reposts."""

from __future__ import annotations

from cars_bot.ai.text import normalize_text, text_hash

AD = "🔥 СРОЧНО! Toyota Camry 2015, 2.5L, пробег 120к.\nОдин хозяин, без ДТП. 1.2 млн ₽"


def test_normalize_text() -> None:
    assert normalize_text(AD) == "срочно toyota camry 2015 2 5l пробег 120к один хозяин без дтп 1 2 млн"
    assert normalize_text("  Ёлка  \t\n ✅✅ ") == "елка"
    assert normalize_text("") == ""


def test_reposts_in_three_channels_share_one_hash() -> None:
    reposts = [
        AD,
        "СРОЧНО!!! toyota camry 2015, 2.5L, пробег 120к. Один хозяин, без ДТП — 1.2 млн 🚗",
        "  🔥🔥 Срочно: Toyota   Camry 2015 / 2.5L / пробег 120к / один хозяин / без ДТП / 1.2 млн  ",
    ]
    assert len({text_hash(text) for text in reposts}) == 1
    assert len(text_hash(AD)) == 64 and int(text_hash(AD), 16) >= 0


def test_different_ads_have_different_hashes() -> None:
    assert text_hash(AD) != text_hash(AD.replace("120к", "130к"))
    assert text_hash(AD) != text_hash(AD.replace("1.2 млн", "1.3 млн"))
