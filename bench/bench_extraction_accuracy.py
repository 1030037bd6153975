"""Accuracy of the rules backend on the labelled corpus.

Usage::

    python bench/bench_extraction_accuracy.py            # table on stdout
    python bench/bench_extraction_accuracy.py --json     # the same figures as JSON
    python bench/bench_extraction_accuracy.py --errors   # also list every miss (on stderr)

Classification accuracy is over every post. A field's accuracy is over the posts labelled as
sales: the prediction must equal the label exactly, and a post the classifier wrongly rejects
counts as a miss for every field it states. "stated" is the same figure restricted to the posts
where the label is not null/unknown, so it is not inflated by fields that are rarely stated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cars_bot.ai import rules  # noqa: E402  (needs the path set above when run as a script)

DEFAULT_CORPUS = ROOT / "tests" / "cars_bot" / "ai" / "corpus.jsonl"
FIELDS = (
    "brand", "model", "year", "price", "mileage", "transmission", "engine_volume", "fuel", "owners",
    "city", "autoteka_status", "market_price",
)
UNSTATED = (None, "unknown")


@dataclass
class FieldScore:
    """Hits over all sale posts, and over the sale posts where the label states a value."""

    correct: int = 0
    total: int = 0
    stated_correct: int = 0
    stated_total: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 1.0

    @property
    def stated_accuracy(self) -> float:
        return self.stated_correct / self.stated_total if self.stated_total else 1.0


@dataclass
class Report:
    """Everything the bench measured."""

    posts: int = 0
    sales: int = 0
    classification_correct: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    fields: dict[str, FieldScore] = field(default_factory=lambda: {name: FieldScore() for name in FIELDS})
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def classification_accuracy(self) -> float:
        return self.classification_correct / self.posts if self.posts else 1.0

    def as_dict(self) -> dict[str, object]:
        return {
            "posts": self.posts,
            "sales": self.sales,
            "classification_accuracy": round(self.classification_accuracy, 4),
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "fields": {
                name: {**asdict(score), "accuracy": round(score.accuracy, 4),
                       "stated_accuracy": round(score.stated_accuracy, 4)}
                for name, score in self.fields.items()
            },
            "ms_per_post": round(1000 * self.seconds / self.posts, 3) if self.posts else 0.0,
        }


def load_corpus(path: Path = DEFAULT_CORPUS) -> list[dict[str, object]]:
    """Read the labelled corpus: one JSON object per line."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(path: Path = DEFAULT_CORPUS) -> Report:
    """Run :func:`cars_bot.ai.rules.analyse` over the corpus and score it against the labels."""
    report = Report()
    started = time.perf_counter()
    for number, row in enumerate(load_corpus(path), start=1):
        text = str(row["text"])
        analysis = rules.analyse(text)
        report.posts += 1
        is_sale = bool(row["is_sale"])
        if analysis.classification.is_sale == is_sale:
            report.classification_correct += 1
        else:
            if is_sale:
                report.false_negatives += 1
            else:
                report.false_positives += 1
            report.errors.append(f"#{number} is_sale: expected {is_sale}, got {analysis.classification.is_sale} "
                                 f"({analysis.classification.reason}) :: {text[:70]!r}")
        if not is_sale:
            continue
        report.sales += 1
        expected = row["expected"]
        assert isinstance(expected, dict)
        car = analysis.car.model_dump() if analysis.car else {}
        for name in FIELDS:
            want = expected.get(name, "unknown" if name == "autoteka_status" else None)
            got = car.get(name, "unknown" if name == "autoteka_status" else None)
            score = report.fields[name]
            score.total += 1
            hit = got == want
            score.correct += hit
            if want not in UNSTATED:
                score.stated_total += 1
                score.stated_correct += hit
            if not hit:
                report.errors.append(f"#{number} {name}: expected {want!r}, got {got!r} :: {text[:50]!r}")
    report.seconds = time.perf_counter() - started
    return report


def render_table(report: Report) -> str:
    """The report as a plain-text table."""
    lines = [
        f"posts: {report.posts} ({report.sales} sales, {report.posts - report.sales} other)",
        f"classification accuracy: {report.classification_accuracy:.1%} "
        f"(false positives {report.false_positives}, false negatives {report.false_negatives})",
        "",
        f"{'field':<16}{'all sales':>12}{'':>10}{'stated only':>14}",
    ]
    for name, score in report.fields.items():
        lines.append(
            f"{name:<16}{score.accuracy:>11.1%} {score.correct:>3}/{score.total:<5}"
            f"{score.stated_accuracy:>12.1%} {score.stated_correct:>3}/{score.stated_total}"
        )
    lines += ["", f"time: {1000 * report.seconds / max(report.posts, 1):.2f} ms per post"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="path to corpus.jsonl")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--errors", action="store_true", help="list every miss on stderr")
    args = parser.parse_args(argv)
    report = evaluate(args.corpus)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_table(report))
    if args.errors:
        print("\n".join(report.errors), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
