"""One ad, one publication: publications per ad when every ad of the AI corpus is reposted in five
channels (reworded as channel admins do), and how many DIFFERENT ads were wrongly merged.

Runs the real pipeline (rules backend) on a temporary SQLite database, without a worker.

    python bench/bench_duplicates.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHANNELS = 5


def _variants(text: str) -> list[str]:
    """The ad as five channels post it: as is, with emoji, in capitals, with a signature, re-spaced."""
    return [text, "🔥🔥 " + text + " ✅", text.upper(), text + "\n\nПодписывайтесь на канал!",
            " ".join(text.split()).replace(", ", " , ")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from cars_bot.ai.pipeline import Filters, RulesBackend, process_post
    from cars_bot.db.migrate import upgrade
    from cars_bot.db.models import Post, PostStatus
    from cars_bot.db.session import session_factory
    from cars_bot.posts import store_post

    texts = []
    for name in ("corpus.jsonl", "holdout.jsonl"):
        for line in (ROOT / "tests" / "cars_bot" / "ai" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for window in (0, 14):
            url = f"sqlite:///{tmp}/w{window}.sqlite3"
            upgrade(url)
            sessions = session_factory(url)
            ad_of: dict[int, int] = {}
            for ad, text in enumerate(texts):
                for channel, variant in enumerate(_variants(text)):
                    with sessions.begin() as session:
                        post, _ = store_post(session, channel=f"@channel_{channel}", text=variant)
                        session.flush()
                        ad_of[post.id] = ad
            published: dict[int, int] = {}
            wrong = 0
            for post_id in sorted(ad_of):
                result = process_post(post_id, task_id=f"t{post_id}", sessions=sessions, backend=RulesBackend(),
                                      filters=Filters(duplicate_window_days=window), enqueue_publish=lambda _: None)
                if result.status is PostStatus.READY:
                    published[ad_of[post_id]] = published.get(ad_of[post_id], 0) + 1
                elif result.status is PostStatus.DUPLICATE:
                    with sessions() as session:
                        original = session.get(Post, post_id).duplicate_of
                    wrong += ad_of[original] != ad_of[post_id]
            figures[f"window_{window}"] = {
                "ads": len(texts), "posts": len(ad_of), "sale_ads_published": len(published),
                "publications": sum(published.values()), "merged_with_another_ad": wrong}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, values in figures.items():
            print(name, values)


if __name__ == "__main__":
    main()
