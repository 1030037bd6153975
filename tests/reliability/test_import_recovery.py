"""Suite 3 and issue 10 item 1b: the broker lost in the middle of `carsctl post import`.

The command exits 69 with one line saying how far it got; every post is stored; re-running the same
import dispatches exactly the posts stored but not dispatched (or whose message the broker lost), once.
Posts stored with `--no-process` are held: recovery leaves them alone until an import processes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from cars_bot.db.models import Post, utcnow
from cars_bot.task_names import PROCESS_POST
from tests.carsctl.cli import invoke
from tests.reliability.conftest import PrivateRedis, Stack, post_records, wait_for, write_jsonl


def _process_messages(app) -> Counter[int]:
    from cars_bot.broker import broker_messages

    return Counter(m.first_arg for m in broker_messages(app) if m.task == PROCESS_POST)


def _dispatch_record(db) -> dict[int, tuple[str | None, bool]]:
    with db() as session:
        return {row.id: (row.dispatch_task_id, row.processing_held)
                for row in session.execute(select(Post.id, Post.dispatch_task_id, Post.processing_held))}


def test_a_send_failing_midway_exits_69_and_a_rerun_dispatches_the_rest_once(
        db, settings, celery_app_real, tmp_path, monkeypatch) -> None:
    from celery import Celery
    from kombu.exceptions import OperationalError

    ads = write_jsonl(tmp_path / "ads.jsonl", post_records(450))
    real_send = Celery.send_task
    sent = []

    def failing_send(self, *args, **kwargs):
        if len(sent) == 333:
            raise OperationalError("Error 111 connecting to redis: Connection refused.")
        result = real_send(self, *args, **kwargs)
        sent.append(result.id)
        return result

    monkeypatch.setattr(Celery, "send_task", failing_send)
    first = invoke("post", "import", str(ads), "--json")
    assert first.exit_code == 69, first.output
    [line] = first.stderr.strip().splitlines()
    assert "broker lost" in line and "333 of 450 posts dispatched" in line and "internal error" not in line
    records = _dispatch_record(db)
    assert len(records) == 450 and sum(task is not None for task, _ in records.values()) == 333

    monkeypatch.setattr(Celery, "send_task", real_send)
    second = invoke("post", "import", str(ads), "--json")
    assert second.exit_code == 0, second.output
    rows = json.loads(second.stdout)
    assert not any(r["created"] for r in rows) and sum(r["task_id"] is not None for r in rows) == 117
    assert _process_messages(celery_app_real) == Counter({post_id: 1 for post_id in records})
    third = json.loads(invoke("post", "import", str(ads), "--json").stdout)
    assert all(r["task_id"] is None for r in third), "a post with a message in the broker was sent again"


def test_no_process_posts_are_held_until_an_import_processes_them(db, settings, celery_app_real, tmp_path) -> None:
    from cars_bot.maintenance import recover_lost_work

    ads = write_jsonl(tmp_path / "ads.jsonl", post_records(3))
    assert invoke("post", "import", str(ads), "--no-process").exit_code == 0
    assert all(held and task is None for task, held in _dispatch_record(db).values())
    later = utcnow() + timedelta(hours=1)
    assert recover_lost_work(celery_app_real, sessions=db, now=later).process == []
    assert invoke("post", "import", str(ads)).exit_code == 0
    records = _dispatch_record(db)
    assert all(task and not held for task, held in records.values())
    assert _process_messages(celery_app_real) == Counter({post_id: 1 for post_id in records})


@pytest.mark.slow
def test_broker_killed_during_import(stack: Stack, private_redis: PrivateRedis, tmp_path, monkeypatch) -> None:
    """Suite 3: redis-server SIGKILLed while `post import` sends; brought back; the import re-run."""
    from cars_bot.celery_app import create_app
    from cars_bot.config import get_settings, reset_settings

    total = 1500
    ads = write_jsonl(tmp_path / "ads.jsonl", post_records(total))
    env = {**stack.run.env, "REDIS_URL": private_redis.url}
    importing = subprocess.Popen([sys.executable, "-m", "carsctl", "post", "import", str(ads), "--json"],
                                 env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = private_redis.client()
    try:
        wait_for(lambda: client.llen("ai_processing") >= 200 or importing.poll() is not None, 60,
                 "the import to send its first tasks")
    finally:
        private_redis.kill()
    out, err = importing.communicate(timeout=30)
    assert importing.returncode == 69, out + err
    assert len(err.strip().splitlines()) == 1, err
    line = err.strip()
    assert "broker lost" in line and f"of {total} posts dispatched" in line, line
    records = _dispatch_record(stack.sessions)
    assert len(records) == total, "every post is stored before any is sent"

    private_redis.start()  # back, with what its append-only file kept
    rerun = stack.carsctl("post", "import", str(ads), "--json", env={"REDIS_URL": private_redis.url})
    assert rerun.returncode == 0, rerun.stderr
    assert sum(r["task_id"] is not None for r in json.loads(rerun.stdout)) < total

    monkeypatch.setenv("REDIS_URL", private_redis.url)
    reset_settings()
    app = create_app(get_settings())
    assert _process_messages(app) == Counter({post_id: 1 for post_id in records}), "stranded or sent twice"
    once_more = stack.carsctl("post", "import", str(ads), "--json", env={"REDIS_URL": private_redis.url})
    assert all(r["task_id"] is None for r in json.loads(once_more.stdout))
