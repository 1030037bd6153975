"""Beat failover with real `celery beat` processes on the test Redis (issue 10, suite item 6).

- a second beat is refused (exit 1) while the first holds the lock;
- a beat stopped with SIGSTOP past the lock TTL while another took over sends nothing once resumed,
  and exits with status 1 (not the 0 Celery's loop would give);
- after the first beat is killed, a new one takes over at once on the same machine, and within the
  TTL when the dead holder ran elsewhere (another host or container: its pid means nothing here).

The beats run a one-entry schedule (a task every second, sent by name to `monitoring`, never
consumed), so every message a beat sends stays countable, each carrying its sender in `origin`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carsctl.process.supervise import default_signals
from tests.reliability.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LOCK_TTL = 5.0
TICK_TASK = "reliability.beat_tick"
APP_MODULE = "reliability_beat_app"
APP_SOURCE = f'''
"""The project's app with a one-entry schedule: {TICK_TASK} every second."""
from cars_bot.celery_app import app

app.conf.beat_schedule = {{
    "tick": {{"task": "{TICK_TASK}", "schedule": 1.0, "options": {{"queue": "monitoring", "expires": 1.0}}}},
}}
'''



@dataclass
class Beats:
    """Starts `celery beat` processes (each with its own home and log) and stops them all afterwards."""

    tmp: Path
    redis_client: object
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        log = open(self.tmp / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", APP_MODULE, "beat", "-l", "info",
             "-s", str(home / "celerybeat-schedule")],
            cwd=self.tmp, env={**self.env, "CARSCTL_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=default_signals)
        log.close()
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def ticking(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """Wait until `process` holds the lock and wrote a heartbeat."""
        from cars_bot.beat import lock_holder, read_heartbeat

        def ready() -> bool:
            assert process.poll() is None, f"beat {process.pid} exited with {process.returncode}"
            heartbeat = read_heartbeat(self.redis_client)
            holder = lock_holder(self.redis_client)
            return bool(heartbeat and heartbeat.pid == process.pid and holder and holder.pid == process.pid)

        wait_for(ready, timeout, f"beat {process.pid} ticking")

    def sent_by(self, process: subprocess.Popen[bytes]) -> int:
        """How many tick messages this beat process has sent (its pid is in each message's origin)."""
        return len([m for m in self.messages() if m["headers"].get("origin", "").startswith(f"gen{process.pid}@")])

    def messages(self) -> list[dict]:
        keys = ["monitoring"] + [f"monitoring:{level}" for level in range(1, 10)]
        return [json.loads(raw) for key in keys for raw in self.redis_client.lrange(key, 0, -1)]

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def beats(tmp_path: Path, redis_url: str, redis_client: object) -> Iterator[Beats]:
    (tmp_path / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    env = {**os.environ, "REDIS_URL": redis_url, "BEAT_LOCK_TTL": str(LOCK_TTL), "LOG_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runner = Beats(tmp_path, redis_client, env)
    try:
        yield runner
    finally:
        runner.stop_all()


def test_a_second_beat_is_refused(beats: Beats) -> None:
    first = beats.start("first")
    beats.ticking(first)
    second = beats.start("second")
    assert second.wait(timeout=60) == 1
    assert "another beat holds cars_bot:beat:lock" in beats.log("second")
    assert first.poll() is None
    beats.ticking(first)


def test_a_paused_beat_resumed_after_a_takeover_sends_nothing_and_exits_1(beats: Beats, redis_client) -> None:
    from cars_bot.beat import LOCK_KEY

    first = beats.start("first")
    beats.ticking(first)
    wait_for(lambda: beats.sent_by(first) >= 2, 30, "the first beat sending ticks")
    os.kill(first.pid, signal.SIGSTOP)
    wait_for(lambda: redis_client.get(LOCK_KEY) is None, LOCK_TTL + 5, "the paused beat's lock expiring")
    second = beats.start("second")
    beats.ticking(second)
    sent_before_resume = beats.sent_by(first)
    os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=30) == 1  # stopped, and says so by its exit status
    assert beats.sent_by(first) == sent_before_resume  # not one duplicate tick
    assert "the beat lock was taken by" in beats.log("first")
    wait_for(lambda: beats.sent_by(second) >= 2, 30, "the new beat sending ticks")
    assert second.poll() is None
    assert all(m["headers"].get("expires") for m in beats.messages())  # periodic messages expire


def test_a_new_beat_takes_over_after_the_first_is_killed(beats: Beats, redis_client) -> None:
    from cars_bot.beat import LOCK_KEY

    first = beats.start("first")
    beats.ticking(first)
    first.kill()
    first.wait()
    killed_at = time.monotonic()
    second = beats.start("second")  # same machine: the dead holder's pid is checked, taken over at once
    beats.ticking(second)
    at_once = time.monotonic() - killed_at

    # The same, as if the killed beat had run in another container: its pid means nothing here, so
    # the new beat is refused until the lock expires. A supervisor restarts it until it stays up.
    second.kill()
    second.wait()
    lock = json.loads(redis_client.get(LOCK_KEY))
    redis_client.set(LOCK_KEY, json.dumps({**lock, "machine": "elsewhere/boot/pid:[1]"}),
                     px=int(LOCK_TTL * 1000))
    killed_at = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        third = beats.start(f"third-{attempts}")
        wait_for(lambda beat=third: beat.poll() is not None or beats.sent_by(beat) > 0, 60, "a verdict")
        if third.poll() is None:
            break
        assert third.returncode == 1 and "another beat holds" in beats.log(f"third-{attempts}")
        assert time.monotonic() - killed_at < 4 * LOCK_TTL, "no takeover long after the lock's TTL"
    beats.ticking(third)
    elsewhere = time.monotonic() - killed_at
    assert attempts > 1  # it was refused while the lock lived
    print(f"takeover after kill: same machine {at_once:.1f}s; holder elsewhere {elsewhere:.1f}s "
          f"(lock TTL {LOCK_TTL:g}s, {attempts} starts)")
