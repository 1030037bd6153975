"""Pipeline throughput: posts from `post import` to published-to-outbox, next to the no-op drain rate.

One worker (`-c 2`, prefork) on the embedded Redis and SQLite, as on a fresh machine. Both phases
enqueue everything first, then start the worker and time from "worker answers ping" to "all done".
A published post is two tasks (process + publish), a rejected post one.

    python bench/bench_pipeline.py [--posts 600] [--noop 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
#: Seconds a phase may take before the bench gives up (a lost task would otherwise hang it for ever).
DRAIN_DEADLINE = 1800.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARSCTL_", "CELERY_", "OPENAI_", "TELEGRAM_", "GOOGLE_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs"), "PYTHONPATH": str(ROOT)})
    return env


def _worker(app: str, env: dict[str, str], queues: str, log: Path) -> subprocess.Popen[bytes]:
    loglevel = os.environ.get("BENCH_LOGLEVEL", "warning")  # "info" logs each task's run time
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "-c", "2", "-P", "prefork", "-Q", queues,
               "-l", loglevel, "-n", f"bench{os.getpid()}@%h", "--without-mingle", "--without-gossip",
               "--logfile", str(log)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(app, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if app.control.ping(timeout=0.3):
            return
    raise RuntimeError("worker did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def noop_rate(env: dict[str, str], home: Path, n: int) -> float:
    code = f"""
from bench.noop_app import app, noop
with app.producer_or_acquire() as producer:
    for i in range({n}):
        noop.apply_async(args=[i], producer=producer)
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return _drain("bench.noop_app", env, home, "default", lambda app: _queues_empty(app), n)


def _queues_empty(app) -> bool:
    from cars_bot.broker import queue_depths

    return all(d.ready == 0 and d.unacked == 0 for d in queue_depths(app).values())


def _drain(app_path: str, env: dict[str, str], home: Path, queues: str, done, count: int) -> float:
    os.environ.update(env)
    from cars_bot.config import reset_settings

    reset_settings()
    import importlib

    module = importlib.import_module(app_path)
    app = module.app
    process = _worker(app_path, env, queues, home / "logs" / f"{app_path}.log")
    try:
        _wait_ready(app)
        began = time.perf_counter()
        while not done(app):
            if time.perf_counter() - began > DRAIN_DEADLINE:
                raise RuntimeError(f"{app_path}: not drained after {DRAIN_DEADLINE:.0f}s; see {home / 'logs'}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
    finally:
        _stop(process)
    return count / elapsed


def pipeline_rate(env: dict[str, str], home: Path, n: int) -> tuple[float, float, dict[str, int]]:
    corpus = [json.loads(line) for line in (ROOT / "tests/cars_bot/ai/corpus.jsonl").read_text().splitlines()
              if line.strip()]
    records = [{"channel": f"@bench{i % 7}", "message_id": i, "text": f"{corpus[i % len(corpus)]['text']} #{i}"}
               for i in range(n)]
    (home / "posts.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    subprocess.run([sys.executable, "-m", "carsctl", "-q", "post", "import", str(home / "posts.jsonl")],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    os.environ.update(env)
    from sqlalchemy import func, select

    from cars_bot.db.models import Post, PostStatus
    from cars_bot.db.session import session_scope

    def finished(_app) -> bool:
        with session_scope() as session:
            pending = session.scalar(select(func.count()).select_from(Post).where(
                Post.status.not_in([PostStatus.PUBLISHED, PostStatus.REJECTED, PostStatus.FAILED])))
        return pending == 0

    posts_per_s = _drain("cars_bot.celery_app", env, home, "ai_processing,publishing", finished, n)
    with session_scope() as session:
        counts = {s.value: c for s, c in session.execute(select(Post.status, func.count()).group_by(Post.status))}
    tasks = n + counts.get("published", 0)
    return posts_per_s, posts_per_s * tasks / n, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--noop", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cbb-"))
    env = _env(home)
    finished = False
    try:
        subprocess.run([sys.executable, "-m", "carsctl", "-q", "broker", "start"], cwd=ROOT, env=env, check=True)
        subprocess.run([sys.executable, "-m", "carsctl", "-q", "db", "upgrade"], cwd=ROOT, env=env, check=True)
        noop = noop_rate(env, home, args.noop)
        posts, tasks, counts = pipeline_rate(env, home, args.posts)
        finished = True
    finally:
        subprocess.run([sys.executable, "-m", "carsctl", "-q", "broker", "stop"], cwd=ROOT, env=env)
        if finished:  # the embedded broker, database and worker logs; kept after a failure, for its logs
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home} (worker logs under logs/)", file=sys.stderr)
    result = {"noop_tasks_per_s": round(noop, 1), "pipeline_posts_per_s": round(posts, 1),
              "pipeline_tasks_per_s": round(tasks, 1), "ratio_tasks_vs_noop": round(tasks / noop, 3),
              "target_ratio": 0.35, "posts": counts}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
