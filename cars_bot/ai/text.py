"""Text normalisation for de-duplication: the same ad reposted with other emoji, case or spacing
normalises to the same string, and so to the same hash."""

from __future__ import annotations

import hashlib
import unicodedata

__all__ = ["normalize_text", "text_hash"]


def _is_kept(ch: str) -> bool:
    # Letters and digits carry the content; everything else (punctuation, emoji, symbols such as
    # ₽ or ✅, variation selectors, zero-width joiners) is layout noise that reposts change freely.
    return unicodedata.category(ch)[0] in ("L", "N")


def normalize_text(text: str) -> str:
    """Return ``text`` lower-cased, with ё folded to е, emoji and punctuation removed and
    whitespace collapsed to single spaces.

    >>> normalize_text("🔥 СРОЧНО!  Toyota Camry 2015,\\n1.2 млн ✅")
    'срочно toyota camry 2015 1 2 млн'
    """
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    cleaned = "".join(ch if _is_kept(ch) else " " for ch in folded)
    return " ".join(cleaned.split())


def text_hash(text: str) -> str:
    """Return the SHA-256 hex digest of :func:`normalize_text` of ``text``."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()
