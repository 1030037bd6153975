"""OpenAI requests per post through the real pipeline and the real `openai` client, against a local
fake chat-completions server: per sale ad, per non-sale post, per duplicate (a repost elsewhere).
Targets: 1, 0, 0.

    python bench/bench_openai_requests.py [--json] [--corpus PATH ...]   # default: the labelled corpus
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cars_bot.ai.pipeline import Filters, backend_for, process_post  # noqa: E402
from cars_bot.config import load_settings  # noqa: E402
from cars_bot.db.migrate import upgrade  # noqa: E402
from cars_bot.db.session import session_factory  # noqa: E402
from cars_bot.posts import store_post  # noqa: E402
from tests.cars_bot.ai.fake_openai import FakeOpenAI  # noqa: E402

REPLY = {"is_sale": True, "confidence": 0.95, "reason": "объявление о продаже", "car": None,
         "summary": "Комплектация по тексту объявления."}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--corpus", type=Path, action="append",
                        help="a labelled JSONL file (repeatable); default tests/cars_bot/ai/corpus.jsonl")
    args = parser.parse_args()
    paths = args.corpus or [ROOT / "tests/cars_bot/ai/corpus.jsonl"]
    corpus = [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    url = f"sqlite:///{tempfile.mkdtemp(prefix='cbo-')}/bench.sqlite3"
    upgrade(url)
    sessions = session_factory(url)
    counts = {"sale": [0, 0], "non_sale": [0, 0], "duplicate": [0, 0]}  # [posts, requests]
    with FakeOpenAI() as server:
        settings = load_settings({"OPENAI_API_KEY": "sk-bench-0123456789", "OPENAI_BASE_URL": server.base_url})
        backend = backend_for(settings)
        message_id = 0

        def run(text: str, channel: str, kind: str) -> None:
            nonlocal message_id
            message_id += 1
            for _ in range(3):
                server.queue_completion(REPLY)
            before = len(server.requests)
            with sessions.begin() as session:
                post, _ = store_post(session, channel=channel, text=text, message_id=message_id)
                session.flush()
                post_id = post.id
            process_post(post_id, task_id=f"b{post_id}", sessions=sessions, backend=backend, filters=Filters(),
                         enqueue_publish=lambda _p: None)
            counts[kind][0] += 1
            counts[kind][1] += len(server.requests) - before
            server.clear()  # drop unused answers

        for record in corpus:
            run(record["text"], "@source", "sale" if record["is_sale"] else "non_sale")
        for record in corpus:
            if record["is_sale"]:
                run("🔥 " + record["text"], "@repost", "duplicate")
    result = {kind: {"posts": n, "requests": r, "requests_per_post": round(r / n, 3) if n else None}
              for kind, (n, r) in counts.items()}
    result["targets"] = {"sale": 1, "non_sale": 0, "duplicate": 0}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'kind':12} {'posts':>6} {'requests':>9} {'per post':>9}  target")
        for kind in ("sale", "non_sale", "duplicate"):
            row = result[kind]
            print(f"{kind:12} {row['posts']:>6} {row['requests']:>9} {row['requests_per_post']!s:>9}  "
                  f"{result['targets'][kind]}")


if __name__ == "__main__":
    main()
