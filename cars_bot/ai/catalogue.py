"""The make/model catalogue: data in ``cars_bot/data/car_catalogue.json``, loaded once.

Every make sold in Russia in the last 20 years (Chinese, premium, commercial and motorcycle makes
included) with its models, their Cyrillic spellings and slang. Names are the canonical Latin
spellings the pipeline stores; aliases are lower case, and spaces and hyphens in them are
insignificant when matching. A *weak* alias is a common word or too short to name a car alone
("жук", "атлас", "6"): it counts only right after its make. A make's weak alias ("газ", "солярис")
counts only when one of its models follows it, so "Hyundai Solaris" stays a Hyundai and "газ" a fuel.

To add a make or a model, edit the JSON; ``tests/cars_bot/ai/test_catalogue.py`` checks its shape
and coverage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Catalogue", "Make", "Model", "catalogue"]


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    aliases: tuple[str, ...]       # strong: the canonical name (lower case) and its spellings
    weak_aliases: tuple[str, ...]  # only next to the make


@dataclass(frozen=True, slots=True)
class Make:
    name: str
    aliases: tuple[str, ...]       # strong: the canonical name (lower case) and its spellings
    weak_aliases: tuple[str, ...]  # only when one of the make's models follows
    models: tuple[Model, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    makes: tuple[Make, ...]

    def make(self, name: str) -> Make | None:
        return next((make for make in self.makes if make.name == name), None)


def _names(raw: object) -> tuple[str, ...]:
    return tuple(str(item).lower().replace("ё", "е") for item in (raw or ()))  # type: ignore[attr-defined]


@cache
def catalogue() -> Catalogue:
    """The catalogue, read from the package data on first use."""
    text = resources.files("cars_bot").joinpath("data", "car_catalogue.json").read_text(encoding="utf-8")
    makes = []
    for entry in json.loads(text)["makes"]:
        models = tuple(
            Model(name=m["name"], aliases=(m["name"].lower(), *_names(m.get("aliases"))),
                  weak_aliases=_names(m.get("weak_aliases")))
            for m in entry["models"])
        weak = _names(entry.get("weak_aliases"))
        strong = _names(entry.get("aliases"))
        own = () if entry["name"].lower() in weak else (entry["name"].lower(),)
        makes.append(Make(name=entry["name"], aliases=(*own, *strong), weak_aliases=weak, models=models))
    return Catalogue(makes=tuple(makes))
