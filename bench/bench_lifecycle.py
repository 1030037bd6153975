"""`carsctl worker start` / `worker stop` wall time next to a plain `celery worker`, in one run.

For each of `--runs` rounds, on the same broker, with the same worker flags:

1. **plain floor**: spawn `celery -A cars_bot.celery_app worker` with a no-op task already waiting in
   its queue; time from spawn until that task's result is stored (the worker consumed its first task),
   and the time until its log says "ready."; then SIGTERM it and time until it exited (plain stop);
2. **carsctl start**: wall time of `carsctl worker start` (the command returns only once the node
   answered a ping addressed to it);
3. **carsctl stop**: wall time of `carsctl worker stop` on that idle node;
4. **cold escalation**: a process that ignores SIGTERM, stopped with a 0.3 s warm timeout: seconds past
   that timeout until the cold shutdown (SIGQUIT) ended it (the stop must not sleep out its bounds);
5. **unreachable broker**: wall time of `carsctl broker status` against a closed loopback port (exit 69).

Targets (issue 4): start within 0.5 s of the plain floor; stop of an idle node under 2 s; cold
escalation within 1 s of the warm timeout; an unreachable broker reported within 5 s (the unit tests
check the behaviour, not these times). Commands run through the real console script (not a pyenv
shim). The machine is shared: compare within one run.

    python bench/bench_lifecycle.py [--runs 5] [--pool prefork|solo|threads] [-c 4] [--redis-url URL] [--json]

Without --redis-url it starts the embedded Redis in a temporary directory (and stops it at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.prefix) / "bin"
TASKS = '''
from cars_bot.celery_app import app


@app.task(name="bench_lifecycle.noop")
def noop():
    return "ok"
'''


def _env(home: Path, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARSCTL_", "CELERY_", "OPENAI_", "TELEGRAM_", "GOOGLE_"))}
    for name in ("REDIS_URL", "DATABASE_URL", "PYTHONPATH"):
        env.pop(name, None)
    env.update({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs"), "NO_COLOR": "1",
                "PYTHONPATH": str(home), "DATABASE_URL": f"sqlite:///{home / 'bench.sqlite3'}"})
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def _carsctl(env: dict[str, str], *args: str) -> float:
    """Wall seconds of one `carsctl ARGS` (raises when it fails)."""
    began = time.perf_counter()
    done = subprocess.run([str(BIN / "carsctl"), *args], cwd=env["CARSCTL_HOME"], env=env, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"carsctl {' '.join(args)} exited {done.returncode}: {done.stderr[-800:]}")
    return elapsed


def _plain_worker(app: Any, env: dict[str, str], flags: list[str], home: Path) -> dict[str, float]:
    """Spawn a plain celery worker with a task waiting; time first task consumed, ready line, stop."""
    node = f"plain{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    log = home / "logs" / f"{node}.log"
    result = app.send_task("bench_lifecycle.noop", queue="default")
    command = [sys.executable, "-m", "celery", "-A", "cars_bot.celery_app", "worker", "-n", node, *flags,
               "--logfile", str(log)]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    ready = first = None
    try:
        while first is None or ready is None:
            if process.poll() is not None:
                raise RuntimeError(f"plain worker exited {process.returncode}: see {log}")
            now = time.perf_counter() - began
            if ready is None and log.exists() and b" ready." in log.read_bytes():
                ready = now
            if first is None and result.ready():
                first = now
            if now > 120:
                raise RuntimeError("plain worker did not consume its task within 120 s")
            time.sleep(0.005)
        time.sleep(0.5)  # idle, as the carsctl node will be
        stop_began = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        stopped = time.perf_counter() - stop_began
    finally:
        if process.poll() is None:
            process.kill()
    return {"plain_first_task": first, "plain_ready_line": ready, "plain_stop": stopped}


WARM_TIMEOUT = 0.3
IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"


def _default_quit() -> None:
    """preexec_fn: SIGQUIT at its default even when this benchmark runs with it ignored (`trap '' QUIT`)."""
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _cold_escalation() -> float:
    """Seconds beyond the warm timeout until a process ignoring SIGTERM was ended by the cold shutdown."""
    from carsctl.process import supervise

    process = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True,
                               preexec_fn=_default_quit)
    try:
        process.stdout.readline()  # its SIGTERM handler is in place
        began = time.perf_counter()
        outcome = supervise.stop_processes([supervise.StopTarget("bench", process.pid)], timeout=WARM_TIMEOUT,
                                           cold_timeout=10, force=True)
        elapsed = time.perf_counter() - began - WARM_TIMEOUT
    finally:
        if process.poll() is None:
            process.kill()
    if outcome["bench"] is not supervise.Shutdown.COLD:
        raise RuntimeError(f"the cold shutdown did not end the process: {outcome['bench']}")
    return elapsed


def _unreachable_broker(env: dict[str, str]) -> float:
    """Wall seconds of `carsctl broker status` against a closed port (it must exit 69)."""
    began = time.perf_counter()
    done = subprocess.run([str(BIN / "carsctl"), "broker", "status"], cwd=env["CARSCTL_HOME"],
                          env={**env, "REDIS_URL": "redis://127.0.0.1:1/0"}, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 69:
        raise RuntimeError(f"carsctl broker status exited {done.returncode}, not 69: {done.stderr[-800:]}")
    return elapsed


def _round(app: Any, env: dict[str, str], flags: list[str], carsctl_flags: list[str], home: Path) -> dict[str, float]:
    figures = _plain_worker(app, env, flags, home)
    figures["carsctl_start"] = _carsctl(env, "-q", "worker", "start", "bench", *carsctl_flags)
    time.sleep(0.5)  # idle, as the plain worker was before its stop
    figures["carsctl_stop"] = _carsctl(env, "-q", "worker", "stop", "bench")
    figures["cold_escalation"] = _cold_escalation()
    figures["unreachable_broker"] = _unreachable_broker(env)
    return figures


def _summary(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: {"median_s": round(statistics.median(s[key] for s in samples), 3),
                  "min_s": round(min(s[key] for s in samples), 3), "max_s": round(max(s[key] for s in samples), 3)}
            for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"))
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("--redis-url", help="Broker to use (default: the embedded Redis in a temp dir).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cbl-"))  # short: the embedded Redis socket lives here
    (home / "bench_lifecycle_tasks.py").write_text(TASKS)
    (home / "logs").mkdir()
    env = _env(home, args.redis_url)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(home))
    from cars_bot.config import get_settings
    from carsctl.process import embedded_redis

    settings = get_settings()
    embedded = settings.uses_embedded_broker
    if embedded:
        embedded_redis.start(settings)
    import bench_lifecycle_tasks  # noqa: F401 - registers the no-op task for send_task's result

    from cars_bot.celery_app import app

    flags = ["-Q", "default", "-P", args.pool, "-c", str(args.concurrency), "-l", "info", "-I", "bench_lifecycle_tasks"]
    carsctl_flags = ["-Q", "default", "--pool", args.pool, "-c", str(args.concurrency), "-I", "bench_lifecycle_tasks"]
    try:
        _carsctl(env, "-q", "db", "upgrade")
        _round(app, env, flags, carsctl_flags, home)  # warm-up: file cache, .pyc
        samples = [_round(app, env, flags, carsctl_flags, home) for _ in range(args.runs)]
    finally:
        subprocess.run([str(BIN / "carsctl"), "-q", "worker", "stop", "--timeout", "10", "--force"], cwd=home,
                       env=env, capture_output=True)
        if embedded:
            embedded_redis.stop(settings)
        shutil.rmtree(home, ignore_errors=True)
    summary = _summary(samples)
    median = {k: v["median_s"] for k, v in summary.items()}
    verdict = {
        "start_minus_floor_s": round(median["carsctl_start"] - median["plain_first_task"], 3),
        "start_ratio": round(median["carsctl_start"] / median["plain_first_task"], 2),
        "start_target_met": median["carsctl_start"] - median["plain_first_task"] <= 0.5,
        "stop_overhead_s": round(median["carsctl_stop"] - median["plain_stop"], 3),
        "stop_target_met": median["carsctl_stop"] < 2.0,
        "stop_floor_above_target": median["plain_stop"] >= 2.0,  # Celery's own shutdown is already slower
        "cold_escalation_target_met": median["cold_escalation"] < 1.0,
        "unreachable_broker_target_met": median["unreachable_broker"] < 5.0,
    }
    report = {"runs": args.runs, "pool": args.pool, "concurrency": args.concurrency,
              "broker": "embedded" if embedded else "given", "figures": summary, "verdict": verdict}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"worker lifecycle, {args.runs} runs, -P {args.pool} -c {args.concurrency}, "
          f"{'embedded Redis' if embedded else 'given Redis'} (medians, min-max, seconds)")
    labels = {"plain_first_task": "plain celery worker: spawn -> first task consumed (floor)",
              "plain_ready_line": "plain celery worker: spawn -> 'ready.' in its log",
              "carsctl_start": "carsctl worker start (returns once it answers a ping)",
              "plain_stop": "plain celery worker: SIGTERM -> exited (idle)",
              "carsctl_stop": "carsctl worker stop (idle node)",
              "cold_escalation": f"cold shutdown: seconds past a {WARM_TIMEOUT}s warm timeout",
              "unreachable_broker": "carsctl broker status, broker unreachable (exit 69)"}
    for key, label in labels.items():
        f = summary[key]
        print(f"  {label:<60} {f['median_s']:6.3f}  ({f['min_s']:.3f}-{f['max_s']:.3f})")
    print(f"  start: carsctl - floor = {verdict['start_minus_floor_s']:+.3f}s (ratio {verdict['start_ratio']}); "
          f"target <= +0.5s: {'met' if verdict['start_target_met'] else 'NOT met'}")
    print(f"  stop: {median['carsctl_stop']:.3f}s (plain {median['plain_stop']:.3f}s, carsctl overhead "
          f"{verdict['stop_overhead_s']:+.3f}s); target < 2s: {'met' if verdict['stop_target_met'] else 'NOT met'}"
          + (" (the plain worker's own warm shutdown is already over 2s)" if verdict["stop_floor_above_target"]
             else ""))
    print(f"  cold escalation: target < 1s: {'met' if verdict['cold_escalation_target_met'] else 'NOT met'}; "
          f"unreachable broker: target < 5s: {'met' if verdict['unreachable_broker_target_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
