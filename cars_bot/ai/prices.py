"""OpenAI prices: USD per 1M tokens, by EXACT model name (a dated snapshot has its own price).

``OPENAI_PRICES`` extends and overrides :data:`DEFAULT_PRICES`: ``model=input/output[/cached],...``,
e.g. ``gpt-4o=2.5/10,my-finetune=0.3/1.2/0.15``. Cached input tokens cost `cached` (default: half
the input price). A model with no price costs ``None`` and is logged once: prefixes are never
guessed, because ``gpt-4o-2024-05-13`` is not priced like ``gpt-4o``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PRICES", "ModelPrice", "cost_usd", "parse_prices"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float | None = None  # None: half the input price

    @property
    def cached(self) -> float:
        return self.input / 2 if self.cached_input is None else self.cached_input

    @property
    def text(self) -> str:
        """As OPENAI_PRICES writes it: "2.5/10" or "2.5/10/1.25"."""
        numbers = (self.input, self.output) if self.cached_input is None else (
            self.input, self.output, self.cached_input)
        return "/".join(f"{n:g}" for n in numbers)


def _price(text: str) -> ModelPrice:
    numbers = [float(part) for part in text.split("/")]
    if len(numbers) not in (2, 3) or any(n < 0 for n in numbers):
        raise ValueError(f"expected input/output[/cached] USD per 1M tokens, got {text!r}")
    return ModelPrice(*numbers)


_DEFAULTS = """\
gpt-4o-mini=0.15/0.60,gpt-4o-mini-2024-07-18=0.15/0.60,
gpt-4o=2.50/10,gpt-4o-2024-08-06=2.50/10,gpt-4o-2024-11-20=2.50/10,gpt-4o-2024-05-13=5/15/5,
gpt-4.1=2/8,gpt-4.1-2025-04-14=2/8,gpt-4.1-mini=0.40/1.60,gpt-4.1-mini-2025-04-14=0.40/1.60,
gpt-4.1-nano=0.10/0.40,gpt-4.1-nano-2025-04-14=0.10/0.40,
o3-mini=1.10/4.40,o3-mini-2025-01-31=1.10/4.40,o4-mini=1.10/4.40,o4-mini-2025-04-16=1.10/4.40,
gpt-5=1.25/10,gpt-5-mini=0.25/2,gpt-5-nano=0.05/0.40"""


def parse_prices(text: str) -> dict[str, ModelPrice]:
    """``model=input/output[/cached]`` items separated by commas; ValueError naming the bad item."""
    prices: dict[str, ModelPrice] = {}
    for item in (part.strip() for part in text.replace("\n", ",").split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected model=input/output[/cached], got {item!r}")
        try:
            prices[name.strip()] = _price(value.strip())
        except ValueError as error:
            raise ValueError(f"{name.strip()}: {error}") from None
    return prices


#: The known models (the snapshot gpt-4o-2024-05-13 kept its launch price and has no cache discount).
DEFAULT_PRICES: dict[str, ModelPrice] = parse_prices(_DEFAULTS)


def cost_usd(prices: dict[str, ModelPrice], model: str, prompt_tokens: int, completion_tokens: int,
             cached_tokens: int = 0) -> float | None:
    """The cost of one request, or None when `model` has no price (exact names only)."""
    price = prices.get(model)
    if price is None:
        return None
    cached = min(max(cached_tokens, 0), prompt_tokens)
    total = (prompt_tokens - cached) * price.input + cached * price.cached + completion_tokens * price.output
    return round(total / 1_000_000, 8)
