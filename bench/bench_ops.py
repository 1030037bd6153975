"""Operations commands side by side with Celery's own, in one run on the embedded Redis.

1. `carsctl inspect active` vs `celery -A cars_bot.celery_app inspect active`, two worker nodes running
   (target: at least 5 times faster);
2. `carsctl status` with the same two nodes vs `celery -A cars_bot.celery_app inspect ping -d NODE`
   (target: at most 0.6 times as long);
3. bulk dispatch of N `process-post` tasks (`carsctl task run process-post --from-file`, kombu's batch
   producer) vs an `apply_async` loop, both in one process (target: at least twice the rate);
4. `carsctl --help` vs a bare `python -c pass` (target: at most 4 times as long; `celery --help` shown too);
5. `carsctl task result <an unknown id> --wait --timeout 60`: says "unknown" at once instead of waiting
   (target: under 2 s; the unit test checks that it does not wait, this measures how soon it answers).

Every command runs as a fresh process through its real console script (not a pyenv shim); figures are
medians of `--runs` runs, and the commands compared are run in turn (interleaved), so a burst of load
on the shared machine hits both sides alike. Compare the ratios, not the absolute times; the load
average is reported with them.

    python bench/bench_ops.py [--runs 7] [--tasks 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.prefix) / "bin"
CELERY_APP = "cars_bot.celery_app"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARSCTL_", "CELERY_", "OPENAI_", "TELEGRAM_", "GOOGLE_"))}
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    env.update({"CARSCTL_HOME": str(home), "LOG_DIR": str(home / "logs"), "NO_COLOR": "1", "COLUMNS": "120"})
    return env


def _carsctl(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "carsctl"), "-q", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def timed(command: list[str], env: dict[str, str], runs: int, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Median, min and max wall time in ms of `command` run `runs` times (after one warm-up run)."""
    samples = []
    for index in range(runs + 1):
        began = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = (time.perf_counter() - began) * 1000
        if done.returncode not in ok:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
        if index:  # the first run warms the file cache
            samples.append(elapsed)
    return {"median_ms": round(statistics.median(samples), 1), "min_ms": round(min(samples), 1),
            "max_ms": round(max(samples), 1)}


def interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    """`timed` for several commands run in turn, one of each per round (after one warm-up round)."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(runs + 1):
        for name, command in commands.items():
            began = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = (time.perf_counter() - began) * 1000
            if done.returncode:
                raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
            if index:
                samples[name].append(elapsed)
    return {name: {"median_ms": round(statistics.median(values), 1), "min_ms": round(min(values), 1),
                   "max_ms": round(max(values), 1)} for name, values in samples.items()}


def reply_wait_ms(env: dict[str, str], runs: int) -> float:
    """How long carsctl waits for the two replies (from the command's own JSON); Celery waits 1000 ms."""
    samples = []
    for _ in range(runs):
        done = subprocess.run([str(BIN / "carsctl"), "inspect", "active", "--json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True)
        samples.append(json.loads(done.stdout)["wait_ms"])
    return round(statistics.median(samples), 1)


def start_workers(env: dict[str, str], home: Path, count: int = 2) -> list[subprocess.Popen[bytes]]:
    """Two prefork worker nodes on the `monitoring` queue, waited for until both answer a ping."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", "-P", "prefork", "-c", "2", "-Q", "monitoring",
         "-l", "warning", "-n", f"bench{number}-{os.getpid()}@%h", "--without-mingle", "--without-gossip",
         "--logfile", str(home / "logs" / f"bench{number}.log")], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for number in range(count)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = subprocess.run([str(BIN / "carsctl"), "inspect", "ping", "--json"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode == 0 and len(json.loads(done.stdout)["replied"]) == count:
            return processes
        time.sleep(0.5)
    stop(processes)
    raise RuntimeError("the bench workers did not start")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


DISPATCH = """
import json, sys, time
from cars_bot.celery_app import app
from carsctl.dispatch.arguments import SendOptions
from carsctl.dispatch.sending import send_bulk
from carsctl.dispatch.task_catalog import load_tasks
task = load_tasks(app)["cars_bot.tasks.ai_tasks.process_post_task"]
n = int(sys.argv[1])

def purge():
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ai_processing")

task.apply_async(args=[0]).id  # connections and routes warm for both
purge()
began = time.perf_counter()
for i in range(n):
    task.apply_async(args=[i])
loop = n / (time.perf_counter() - began)
purge()
began = time.perf_counter()
sent = send_bulk(app, task, [[i] for i in range(n)], SendOptions()).sent
bulk = sent / (time.perf_counter() - began)
purge()
print(json.dumps({"apply_async_loop_per_s": round(loop), "bulk_per_s": round(bulk), "tasks": n}))
"""


def dispatch_rates(env: dict[str, str], tasks: int) -> dict[str, Any]:
    """Both dispatch paths in one process, one after the other, the queue purged in between."""
    done = subprocess.run([sys.executable, "-c", DISPATCH, str(tasks)], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_bulk(env: dict[str, str], home: Path, tasks: int) -> dict[str, Any]:
    """The command a user runs: `carsctl task run process-post --from-file ids.txt --json`."""
    ids = home / "ids.txt"
    ids.write_text("\n".join(str(i) for i in range(1, tasks + 1)) + "\n")  # post ids start at 1
    began = time.perf_counter()
    done = subprocess.run([str(BIN / "carsctl"), "task", "run", "process-post", "--from-file", str(ids), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:  # reported, and the other figures kept
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    report = json.loads(done.stdout)
    _carsctl(env, "purge", "-Q", "ai_processing", "--yes")
    return {"sent": report["sent"], "dispatch_per_s": report["rate_per_s"],
            "whole_command_per_s": round(report["sent"] / wall)}


def run(runs: int, tasks: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="cbo-"))
    (home / "logs").mkdir()
    env = _env(home)
    _carsctl(env, "broker", "start")
    _carsctl(env, "db", "upgrade")
    result: dict[str, Any] = {}
    try:
        result["load_average"] = {"before": [round(x, 2) for x in os.getloadavg()]}
        result["help"] = interleaved({"carsctl": [str(BIN / "carsctl"), "--help"],
                                      "python": [sys.executable, "-c", "pass"],
                                      "celery": [str(BIN / "celery"), "--help"]}, env, runs)
        workers = start_workers(env, home)
        try:
            result["inspect_active"] = interleaved({
                "carsctl": [str(BIN / "carsctl"), "inspect", "active"],
                "celery": [str(BIN / "celery"), "-A", CELERY_APP, "inspect", "active"]}, env, runs)
            result["inspect_active"]["carsctl_reply_wait_ms"] = reply_wait_ms(env, runs)
            node = sorted(json.loads(subprocess.run(
                [str(BIN / "carsctl"), "inspect", "ping", "--json"], cwd=ROOT, env=env, capture_output=True,
                text=True, check=True).stdout)["replied"])[0]
            result["status"] = interleaved({
                "carsctl": [str(BIN / "carsctl"), "status"],
                "celery_ping": [str(BIN / "celery"), "-A", CELERY_APP, "inspect", "ping", "-d", node]}, env, runs)
        finally:
            stop(workers)
        unknown = ["task", "result", "00000000-0000-0000-0000-000000000000", "--wait", "--timeout", "60"]
        result["unknown_result"] = {"carsctl": timed([str(BIN / "carsctl"), *unknown], env, runs, ok=(1,))}
        result["dispatch"] = dispatch_rates(env, tasks)
        result["dispatch"]["cli"] = cli_bulk(env, home, tasks)
    finally:
        subprocess.run([str(BIN / "carsctl"), "-q", "broker", "stop"], cwd=ROOT, env=env)
        shutil.rmtree(home, ignore_errors=True)
    result["load_average"]["after"] = [round(x, 2) for x in os.getloadavg()]
    result["ratios"] = {
        "inspect_active_celery_over_carsctl": round(result["inspect_active"]["celery"]["median_ms"]
                                                    / result["inspect_active"]["carsctl"]["median_ms"], 2),
        "status_over_celery_ping": round(result["status"]["carsctl"]["median_ms"]
                                         / result["status"]["celery_ping"]["median_ms"], 2),
        "help_over_python": round(result["help"]["carsctl"]["median_ms"] / result["help"]["python"]["median_ms"], 2),
        "bulk_over_apply_async_loop": round(result["dispatch"]["bulk_per_s"]
                                            / result["dispatch"]["apply_async_loop_per_s"], 2),
        "help_celery_over_carsctl": round(result["help"]["celery"]["median_ms"]
                                          / result["help"]["carsctl"]["median_ms"], 2),
    }
    result["targets"] = {"inspect_active_ratio": 5.0, "status_over_celery_ping": 0.6, "bulk_ratio": 2.0,
                         "help_over_python": 4.0, "unknown_result_ms": 2000}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (after one warm-up)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per dispatch measurement")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    result = run(args.runs, args.tasks)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    inspect, help_, dispatch = result["inspect_active"], result["help"], result["dispatch"]
    ratios = result["ratios"]
    print(f"inspect active, 2 nodes   carsctl {inspect['carsctl']['median_ms']:7.1f} ms   "
          f"celery {inspect['celery']['median_ms']:7.1f} ms   x{ratios['inspect_active_celery_over_carsctl']} "
          f"(target x5); waiting for the replies: {inspect['carsctl_reply_wait_ms']} ms")
    print(f"status, 2 nodes           carsctl {result['status']['carsctl']['median_ms']:7.1f} ms   "
          f"celery inspect ping -d {result['status']['celery_ping']['median_ms']:7.1f} ms   "
          f"x{ratios['status_over_celery_ping']} (target at most x0.6)")
    print(f"dispatch {dispatch['tasks']} process-post  bulk {dispatch['bulk_per_s']:7d}/s   apply_async loop "
          f"{dispatch['apply_async_loop_per_s']:5d}/s   x{ratios['bulk_over_apply_async_loop']} (target x2); "
          f"whole CLI command {dispatch['cli'].get('whole_command_per_s', dispatch['cli'].get('error'))}/s")
    print(f"result of an unknown id   carsctl {result['unknown_result']['carsctl']['median_ms']:7.1f} ms   "
          "(target < 2000 ms)")
    print(f"--help                    carsctl {help_['carsctl']['median_ms']:7.1f} ms   "
          f"python -c pass {help_['python']['median_ms']:7.1f} ms   x{ratios['help_over_python']} (target at most x4); "
          f"celery --help {help_['celery']['median_ms']:.1f} ms")
    load = result["load_average"]
    print(f"load average              before {load['before']}   after {load['after']}")


if __name__ == "__main__":
    main()
