"""Benchmark: one TAB of carsctl's generated completion in bash, zsh and fish, next to Typer's own.

For each scenario and shell:
- per TAB (warm): the shell is started with the script loaded, and only the completion call is timed,
  inside the shell: bash loops the completion function with COMP_* set ($EPOCHREALTIME), fish loops
  `complete -C` (`time`), zsh presses TAB in a zpty-driven interactive shell and times compsys from
  `compprefuncs` to `comppostfuncs` ($EPOCHREALTIME);
- first TAB (cold): the first completion in a fresh shell, including loading the script (bash: `source`,
  zsh: autoload from $fpath, fish: autoload from $fish_complete_path);
- Typer: the same words through Typer's own mechanism for the same app (`_CARSCTL_COMPLETE=complete_bash`
  and friends), the full process as each TAB runs it; fish runs it twice per TAB (is-args, get-args).

The carsctl app is built with `add_completion=False`, so Typer's completion classes are registered by a
tiny wrapper module (`typer.completion.completion_init()`, then the app as usual). Scenarios whose
command does not exist yet in the real tree run on a small stand-in app of the same shape (marked *);
their Typer column is then the real app's `carsctl <TAB>`, the least any Typer TAB of this app costs.

Medians. Targets: under 10 ms per TAB, and at least 10 times faster than Typer's path.
Run: python bench/bench_completion.py [--json] [--rounds 7] [--loops 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carsctl.generated.completion_cache import static_task_names, task_lines  # noqa: E402
from carsctl.generated.completion_scripts import INSTALLED_NAMES, generate  # noqa: E402
from carsctl.generated.completion_specs import SHELLS, command_specs  # noqa: E402

Env = dict[str, str]
Samples = list[float]

TARGET_MS = 10.0
TARGET_RATIO = 10.0

#: (name, command line with the cursor at its end, command path that must exist)
SCENARIOS: tuple[tuple[str, str, str], ...] = (
    ("commands", "carsctl ", ""),
    ("options", "carsctl completion install --", "completion install"),
    ("choices", "carsctl completion show ", "completion show"),
    ("task aliases (cache)", "carsctl task run ", "task run"),
    ("node names (state dir)", "carsctl worker stop ", "worker stop"),
    ("queue names", "carsctl purge -Q ", "purge"),
)


def stand_in_app() -> Any:
    """task run / worker stop / purge, with the parameter shapes the value table expects."""
    app = typer.Typer(name="carsctl", add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def root() -> None:
        """Root."""

    task = typer.Typer(help="Tasks.")
    worker = typer.Typer(help="Workers.")

    @task.command("run")
    def run(name: Annotated[str, typer.Argument()], wait: Annotated[bool, typer.Option("--wait")] = False) -> None:
        """Send a task."""

    @worker.command("stop")
    def stop(names: Annotated[list[str] | None, typer.Argument()] = None) -> None:
        """Stop workers."""

    @worker.command("start")
    def start(pool: Annotated[str, typer.Option("-P", "--pool")] = "prefork") -> None:
        """Start a worker."""

    @app.command("purge")
    def purge(queues: Annotated[list[str] | None, typer.Option("-Q", "--queues")] = None) -> None:
        """Purge queues."""

    app.add_typer(task, name="task")
    app.add_typer(worker, name="worker")
    return app


# --- shells ----------------------------------------------------------------------------------------

def bash_words(line: str) -> list[str]:
    """COMP_WORDS as readline builds them (cursor at the end of `line`)."""
    words = line.split()
    return [*words, ""] if line.endswith(" ") else words


_BASH_WARM = r"""
source "$1"; loops=$2; rounds=$3; shift 3
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
for (( r = 0; r < rounds; r++ )); do
    t0=$EPOCHREALTIME
    for (( k = 0; k < loops; k++ )); do
        COMPREPLY=()
        _carsctl carsctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    done
    t1=$EPOCHREALTIME
    echo "$t0 $t1 ${#COMPREPLY[@]}"
done
"""

_BASH_COLD = r"""
t0=$EPOCHREALTIME
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
COMPREPLY=()
_carsctl carsctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
t1=$EPOCHREALTIME
echo "$t0 $t1 ${#COMPREPLY[@]}"
"""

_ZSH_INIT = r"""
PS1='' PROMPT='' RPROMPT='' PROMPT_EOL_MARK=''
fpath=($CC_FPATH $fpath)
autoload -Uz compinit && compinit -u -D
zmodload zsh/datetime
bindkey '^I' complete-word
# compprefuncs/comppostfuncs are emptied on each use: each hook re-arms the other.
_cc_pre() { typeset -g _cc_t0=$EPOCHREALTIME; comppostfuncs=(_cc_post); }
_cc_post() {
    print -r -- "<<END>> $(( (EPOCHREALTIME - _cc_t0) * 1000.0 )) $compstate[nmatches]"
    compstate[insert]='' compstate[list]=''
    compprefuncs=(_cc_pre)
}
compprefuncs=(_cc_pre)
print -r -- '<<READY>>'
"""

_ZSH_DRIVER = r"""
zmodload zsh/zpty zsh/datetime
zpty z zsh -f -i
zpty -w z "source ${(q)CC_INIT}"
local line q=$1 t0
integer k
while zpty -r z line; do
    [[ $line == *'<<READY>>'* && $line != *source* ]] && break
done
for (( k = 0; k < $2; k++ )); do
    t0=$EPOCHREALTIME
    zpty -w -n z "$q"$'\t'
    while zpty -r z line; do
        if [[ $line == *'<<END>>'* ]]; then
            line=${line//$'\r'/}
            print -r -- "${${line#*<<END>> }%$'\n'} $(( (EPOCHREALTIME - t0) * 1000.0 ))"
            break
        fi
    done
    zpty -w -n z $'\C-u'
done
zpty -d z
"""

_FISH_WARM = r"""
set -p fish_complete_path $CC_FPATH
complete -C"$argv[1]" >/dev/null
for r in (seq $argv[3])
    time for k in (string split '' (string repeat -n $argv[2] x))
        complete -C"$argv[1]" >/dev/null
    end
end
"""

_FISH_COLD = r"""
set -p fish_complete_path $CC_FPATH
time complete -C"$argv[1]" >/dev/null
"""

_UNITS = {"micros": 1e-3, "millis": 1.0, "secs": 1e3, "mins": 6e4}


def _fish_times(stderr: str) -> list[float]:
    return [float(value) * _UNITS[unit] for value, unit in re.findall(r"Executed in\s+([\d.]+) (\w+)", stderr)]


def _run(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stderr}")
    return result


def bash_times(script: Path, line: str, loops: int, rounds: int, env: Env, cwd: Path) -> tuple[Samples, Samples, int]:
    """(warm per-call ms per round, cold ms per process, candidates)."""
    words = bash_words(line)
    out = _run(["bash", "--norc", "--noprofile", "-c", _BASH_WARM, "bench", str(script), str(loops), str(rounds),
                *words], env, cwd).stdout
    warm, candidates = [], 0
    for row in out.split("\n"):
        if row:
            t0, t1, n = row.split()
            warm.append((float(t1) - float(t0)) * 1000 / loops)
            candidates = int(n)
    cold = []
    for _ in range(rounds):
        t0, t1, _n = _run(["bash", "--norc", "--noprofile", "-c", _BASH_COLD, "bench", str(script), *words],
                          env, cwd).stdout.split()
        cold.append((float(t1) - float(t0)) * 1000)
    return warm, cold, candidates


def zsh_times(scripts: Path, line: str, loops: int, rounds: int, env: Env,
              cwd: Path) -> tuple[Samples, Samples, int, Samples]:
    """(warm in-compsys ms per TAB, first-TAB ms per session, candidates, warm pty round trips)."""
    init = scripts / "bench_init.zsh"
    init.write_text(_ZSH_INIT)
    environment = {**env, "CC_INIT": str(init), "CC_FPATH": str(scripts)}
    warm: list[float] = []
    trips: list[float] = []
    cold: list[float] = []
    candidates = 0
    per_session = max(2, min(loops, 50) + 1)
    for _ in range(rounds):
        out = _run(["zsh", "-f", "-c", _ZSH_DRIVER, "bench", line, str(per_session)], environment, cwd).stdout
        rows = [row.split() for row in out.splitlines() if row.strip()]
        cold.append(float(rows[0][0]))
        warm += [float(row[0]) for row in rows[1:]]
        trips += [float(row[2]) for row in rows[1:]]
        candidates = int(rows[-1][1])
    return warm, cold, candidates, trips


def fish_times(scripts: Path, line: str, loops: int, rounds: int, env: Env, cwd: Path) -> tuple[Samples, Samples, int]:
    """(warm per-call ms per round, first-TAB ms per process, candidates)."""
    environment = {**env, "CC_FPATH": str(scripts)}
    result = _run(["fish", "--no-config", "-c", _FISH_WARM, line, str(loops), str(rounds)], environment, cwd)
    warm = [ms / loops for ms in _fish_times(result.stderr)]
    cold = []
    for _ in range(rounds):
        cold += _fish_times(_run(["fish", "--no-config", "-c", _FISH_COLD, line], environment, cwd).stderr)
    count = _run(["fish", "--no-config", "-c", 'set -p fish_complete_path $CC_FPATH; complete -C"$argv[1]"', line],
                 environment, cwd).stdout
    return warm, cold, len([row for row in count.splitlines() if row])


# --- Typer ------------------------------------------------------------------------------------------

_TYPER_WRAPPER = """\
import typer.completion
from carsctl.app import app
typer.completion.completion_init()  # what add_completion=True would register
app(prog_name="carsctl")
"""


def typer_times(wrapper: Path, shell: str, line: str, rounds: int, env: Env, cwd: Path) -> tuple[Samples, int]:
    """Wall time of Typer's completion per TAB (fish: two processes), and its candidate count."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    base = {**env, "_CARSCTL_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        runs = [{"COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1)}]
    elif shell == "zsh":
        runs = [{"_TYPER_COMPLETE_ARGS": line}]
    else:
        runs = [{"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": action}
                for action in ("is-args", "get-args")]
    samples, candidates = [], 0
    for _ in range(rounds):
        total = 0.0
        for extra in runs:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, str(wrapper)], capture_output=True, text=True,
                                    env={**base, **extra}, cwd=cwd, timeout=60)
            total += (time.perf_counter() - start) * 1000
            candidates = len([row for row in result.stdout.splitlines() if row.strip()])
        samples.append(total)
    return samples, candidates


# --- the run ---------------------------------------------------------------------------------------

@dataclass
class Row:
    scenario: str
    shell: str
    stand_in: bool
    candidates: int
    warm_ms: float
    warm_min_ms: float
    warm_max_ms: float
    first_tab_ms: float
    typer_ms: float
    typer_words: str
    typer_candidates: int
    speedup_warm: float
    speedup_first_tab: float
    zsh_pty_round_trip_ms: float | None = None


def _write_scripts(directory: Path, app: Any | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    specs = command_specs(app)
    for shell in SHELLS:
        (directory / INSTALLED_NAMES[shell]).write_text(generate(shell, specs=specs))
    return directory


def run(rounds: int, loops: int) -> dict[str, Any]:
    missing = [shell for shell in SHELLS if shutil.which(shell) is None]
    if missing:
        raise SystemExit(f"install {' '.join(missing)} first (Debian: apt-get install -y bash zsh fish)")
    work = Path(tempfile.mkdtemp(prefix="bench-completion-"))
    try:
        real = _write_scripts(work / "real", None)
        stand_in = _write_scripts(work / "stand-in", stand_in_app())
        real_paths = {spec.path for spec in command_specs()}
        home = work / "home"
        (home / "nodes").mkdir(parents=True)
        for node in ("ai", "publishing", "worker", "beat"):
            kind = "beat" if node == "beat" else "worker"
            (home / "nodes" / f"{node}.json").write_text(json.dumps({"name": node, "kind": kind}, indent=2))
        (home / "completion").mkdir()
        (home / "completion" / "tasks").write_text("\n".join(task_lines(static_task_names())) + "\n")
        env = {**os.environ, "CARSCTL_HOME": str(home), "LC_ALL": "C"}
        wrapper = work / "typer_complete.py"
        wrapper.write_text(_TYPER_WRAPPER)
        python_ms = statistics.median(_timed([sys.executable, "-c", "pass"], env, work) for _ in range(rounds))
        typer_cache: dict[tuple[str, str], tuple[list[float], int]] = {}
        rows: list[Row] = []
        for name, line, path in SCENARIOS:
            in_real = path in real_paths
            scripts = real if in_real else stand_in
            typer_line = line if in_real else "carsctl "
            for shell in SHELLS:
                trips: list[float] | None = None
                if shell == "bash":
                    warm, cold, count = bash_times(scripts / "carsctl", line, loops, rounds, env, work)
                elif shell == "zsh":
                    warm, cold, count, trips = zsh_times(scripts, line, loops, rounds, env, work)
                else:
                    warm, cold, count = fish_times(scripts, line, loops, rounds, env, work)
                key = (shell, typer_line)
                if key not in typer_cache:
                    typer_cache[key] = typer_times(wrapper, shell, typer_line, rounds, env, work)
                typer_samples, typer_count = typer_cache[key]
                warm_ms, cold_ms, typer_ms = (statistics.median(warm), statistics.median(cold),
                                              statistics.median(typer_samples))
                rows.append(Row(
                    scenario=name, shell=shell, stand_in=not in_real, candidates=count,
                    warm_ms=round(warm_ms, 3), warm_min_ms=round(min(warm), 3), warm_max_ms=round(max(warm), 3),
                    first_tab_ms=round(cold_ms, 3), typer_ms=round(typer_ms, 1), typer_words=typer_line,
                    typer_candidates=typer_count, speedup_warm=round(typer_ms / warm_ms, 1),
                    speedup_first_tab=round(typer_ms / cold_ms, 1),
                    zsh_pty_round_trip_ms=round(statistics.median(trips), 3) if trips else None,
                ))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = all(r.warm_ms < TARGET_MS and r.speedup_warm >= TARGET_RATIO for r in rows)
    return {
        "rounds": rounds, "loops": loops, "python_startup_ms": round(python_ms, 1),
        "targets": {"per_tab_ms": TARGET_MS, "times_faster_than_typer": TARGET_RATIO, "met": ok},
        "shells": {shell: _version(shell) for shell in SHELLS},
        "rows": [asdict(r) for r in rows],
    }


def _timed(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, timeout=60)
    return (time.perf_counter() - start) * 1000


def _version(shell: str) -> str:
    out = subprocess.run([shell, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0].strip() if out else "?"


def render(report: dict[str, Any]) -> str:
    header = (f"{'scenario':<24} {'shell':<5} {'cands':>5} {'per TAB':>9} {'1st TAB':>9} "
              f"{'Typer/TAB':>10} {'cands':>5} {'x faster':>9} {'x (1st)':>8}")
    lines = [header, "-" * len(header)]
    for row in report["rows"]:
        name = row["scenario"] + (" *" if row["stand_in"] else "")
        lines.append(f"{name:<24} {row['shell']:<5} {row['candidates']:>5} {row['warm_ms']:>7.2f}ms "
                     f"{row['first_tab_ms']:>7.2f}ms {row['typer_ms']:>8.1f}ms {row['typer_candidates']:>5} "
                     f"{row['speedup_warm']:>8.0f}x "
                     f"{row['speedup_first_tab']:>7.0f}x")
    targets = report["targets"]
    lines += [
        "",
        f"medians of {report['rounds']} rounds ({report['loops']} TABs per round where looped); "
        f"python -c pass: {report['python_startup_ms']} ms; " + ", ".join(report["shells"].values()),
        "per TAB: the completion call only, in a running shell; 1st TAB: first completion in a fresh shell, "
        "loading the script; Typer/TAB: _CARSCTL_COMPLETE=complete_<shell>, whole process (fish: 2 per TAB)",
        "* the command does not exist yet in the real tree: a stand-in app of the same shape; "
        "its Typer column is the real app's `carsctl <TAB>`",
        "Typer has no completer for plain-str parameters (0 candidates, zsh: a _files fallback): "
        "its figure there is a lower bound",
        f"targets: < {targets['per_tab_ms']:.0f} ms per TAB and >= {targets['times_faster_than_typer']:.0f}x "
        f"faster than Typer: {'met' if targets['met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--rounds", type=int, default=7, help="samples per figure (default 7)")
    parser.add_argument("--loops", type=int, default=100, help="TABs per warm sample (default 100)")
    options = parser.parse_args()
    report = run(options.rounds, options.loops)
    print(json.dumps(report, indent=2) if options.json else render(report))


if __name__ == "__main__":
    main()
