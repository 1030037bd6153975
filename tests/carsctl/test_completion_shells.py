"""The generated completion scripts, loaded in real bash, zsh and fish and asked for candidates.

- bash: the function registered by `complete -F`, called with COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT
  as readline sets them (`--opt=value` split at `=`), printing COMPREPLY;
- zsh: an interactive zsh in a `zpty`, the script autoloaded from `$fpath` by compinit (or sourced),
  a real TAB (`complete-word`), the matches captured by wrapping `compadd`;
- fish: `complete -C"carsctl ..."`, the script autoloaded from `$fish_complete_path`;
- shellcheck: the bash template, the fragment bash shares with zsh, and the bash scripts made from them.

Each test skips on its own when its shell (or shellcheck) is missing, so bash, always there, always runs;
CI (CI=true) installs them all, and there nothing skips.

The dynamic points (task aliases, nodes, queues, log targets, pools, log levels) are checked on a
stand-in app with the shapes of those commands (tests/carsctl/completion_demo.py), so they are tested
whatever the real tree holds today; the real app's scripts are checked for its top-level commands and
nested options.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import typer

from cars_bot.config import QUEUES
from carsctl.generated.completion_cache import static_task_names, task_lines
from carsctl.generated.completion_scripts import (
    INSTALLED_NAMES,
    SHARED_TEMPLATE,
    TEMPLATE_NAMES,
    generate,
    templates_dir,
)
from carsctl.generated.completion_specs import SHELLS, command_specs
from tests.carsctl.completion_demo import demo_app


def needs(program: str) -> pytest.MarkDecorator:
    """Skip when `program` is missing, except in CI (CI=true), which installs it: there the test must run."""
    return pytest.mark.skipif(shutil.which(program) is None and not os.environ.get("CI"),
                              reason=f"needs {program} (Debian package: {program})")


#: The three shells as test parameters, each skipped on its own when missing.
EACH_SHELL = [pytest.param(shell, marks=needs(shell), id=shell) for shell in SHELLS]

END = "<<END>>"
TASK_NAMES = ("cars_bot.tasks.ai_tasks.process_post_task", "cars_bot.tasks.publishing_tasks.publish_post_task",
              "cars_bot.tasks.sheets_tasks.sync_channels_task")
ALIASES = ("process-post", "publish-post", "sync-channels")


# --- driving the shells ----------------------------------------------------------------------------

def bash_words(line: str) -> list[str]:
    """COMP_WORDS as readline builds them for `line` (cursor at the end): `--opt=v` is `--opt`,`=`,`v`."""
    words: list[str] = []
    for token in line.split():
        if token.startswith("-") and "=" in token:
            left, right = token.split("=", 1)
            words += [left, "="] + ([right] if right else [])
        else:
            words.append(token)
    if line.endswith(" "):
        words.append("")
    return words


_BASH = r"""
source "$1"; shift
spec=$(complete -p carsctl) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
compopt() { printf 'COMPOPT %s\n' "$*"; }
while (( $# )); do
    n=$1; shift
    COMP_WORDS=("${@:1:n}"); shift "$n"
    COMP_CWORD=$(( n - 1 ))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$fn" carsctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    (( ${#COMPREPLY[@]} )) && printf '%s\n' "${COMPREPLY[@]}"
    printf '%s\n' '<<END>>'
done
"""

_ZSH_INIT = r"""
PS1='' PROMPT='' RPROMPT='' PROMPT_EOL_MARK=''
if [[ -n $CC_SOURCE ]]; then
    autoload -Uz compinit && compinit -u -D
    source $CC_SOURCE
else
    fpath=($CC_FPATH $fpath)
    autoload -Uz compinit && compinit -u -D
fi
bindkey '^I' complete-word
# compprefuncs/comppostfuncs are emptied on each use: each hook re-arms the other.
_cc_pre() { comppostfuncs=(_cc_post); }
_cc_post() {
    print -r -- '<<END>>'
    compstate[insert]='' compstate[list]=''
    compprefuncs=(_cc_pre)
}
compprefuncs=(_cc_pre)
compadd() {
    if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return
    fi
    local -a __hits
    builtin compadd -A __hits "$@"
    local __h
    for __h in $__hits; do print -r -- "<<M>>$IPREFIX$__h"; done
    builtin compadd "$@"
}
print -r -- '<<READY>>'
"""

_ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "source ${(q)CC_INIT}"
local line
while zpty -r z line; do
    [[ $line == *'<<READY>>'* && $line != *source* ]] && break
done
for q in "$@"; do
    zpty -w -n z "$q"$'\t'
    while zpty -r z line; do
        line=${line//$'\r'/}
        line=${line%$'\n'}
        [[ $line == *'<<M>>'* ]] && print -r -- "${line#*<<M>>}"
        if [[ $line == *'<<END>>'* ]]; then
            print -r -- '<<END>>'
            break
        fi
    done
    zpty -w -n z $'\C-u'
done
zpty -d z
"""

_FISH = r"""
set -p fish_complete_path $CC_FPATH
for q in $argv
    complete -C"$q"
    echo '<<END>>'
end
"""


def _run(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> str:
    """Run a harness in its own process group (a stuck zpty is killed with it)."""
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=cwd, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"{argv[0]} harness timed out: {out}\n{err}") from None
    assert process.returncode == 0, f"{argv[0]} harness failed ({process.returncode}): {err}\n{out}"
    return out


def _split(out: str, queries: int) -> list[list[str]]:
    answers: list[list[str]] = [[]]
    for line in out.splitlines():
        if line.startswith(END):
            answers.append([])
        elif line and line not in answers[-1]:
            answers[-1].append(line.split("\t", 1)[0])
    answers.pop()
    assert len(answers) == queries, out
    return answers


def complete(shell: str, scripts: Path, lines: Sequence[str], *, env: dict[str, str | None] | None = None,
             cwd: Path | None = None, zsh_source: bool = False) -> list[list[str]]:
    """The candidates each shell offers for each line (cursor at its end), in one shell process."""
    merged: dict[str, str | None] = {**os.environ, **(env or {})}
    environment = {k: v for k, v in merged.items() if v is not None}
    cwd = cwd or scripts
    if shell == "bash":
        args: list[str] = []
        for line in lines:
            words = bash_words(line)
            args += [str(len(words)), *words]
        out = _run(["bash", "--norc", "--noprofile", "-c", _BASH, "harness",
                    str(scripts / INSTALLED_NAMES["bash"]), *args], environment, cwd)
    elif shell == "zsh":
        init = scripts / "harness_init.zsh"
        init.write_text(_ZSH_INIT)
        environment.update(CC_INIT=str(init), CC_FPATH=str(scripts),
                           CC_SOURCE=str(scripts / "_carsctl") if zsh_source else "")
        out = _run(["zsh", "-f", "-c", _ZSH_DRIVER, "harness", *lines], environment, cwd)
    else:
        environment["CC_FPATH"] = str(scripts)
        out = _run(["fish", "--no-config", "-c", _FISH, *lines], environment, cwd)
    return _split(out, len(lines))


def write_scripts(directory: Path, app: typer.Typer | None) -> Path:
    """The three scripts for `app`, under their installed names (what each shell autoloads)."""
    directory.mkdir(parents=True, exist_ok=True)
    specs = command_specs(app)
    for shell in SHELLS:
        (directory / INSTALLED_NAMES[shell]).write_text(generate(shell, specs=specs))
    return directory


@pytest.fixture(scope="module")
def demo_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripts(tmp_path_factory.mktemp("demo-scripts"), demo_app())


@pytest.fixture(scope="module")
def real_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripts(tmp_path_factory.mktemp("real-scripts"), None)


def make_home(home: Path, nodes: Sequence[str] = ("ai", "worker", "beat", "telegram", "bare"),
              tasks: bool = True) -> Path:
    """A state directory with node state files and (optionally) the task cache."""
    (home / "nodes").mkdir(parents=True, exist_ok=True)
    for name in nodes:
        kind = {"beat": "beat", "telegram": "monitor"}.get(name, "worker")
        (home / "nodes" / f"{name}.json").write_text(json.dumps({"name": name, "kind": kind, "pid": 1}, indent=2))
    (home / "nodes" / "beat.tmp").write_text("{}")  # not a state file
    if tasks:
        (home / "completion").mkdir(parents=True, exist_ok=True)
        (home / "completion" / "tasks").write_text("\n".join(task_lines(TASK_NAMES)) + "\n")
    if "bare" in nodes:  # written without a kind: a worker, as NodeState's default says
        (home / "nodes" / "bare.json").write_text('{"name": "bare"}')
    return home


@pytest.fixture
def home_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {"CARSCTL_HOME": str(make_home(tmp_path / "state"))}


# --- the real app ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shell", EACH_SHELL)
def test_top_level_commands_and_nested_options(shell: str, real_scripts: Path, home_env: dict[str, str]) -> None:
    root = command_specs()[0]
    top, options, shells, root_opts, prefixed = complete(shell, real_scripts, [
        "carsctl ", "carsctl completion install --", "carsctl completion show ", "carsctl --",
        "carsctl comp"], env=home_env)
    assert set(top) == {name for name, _ in root.subcommands}
    assert {"config", "broker", "completion"} <= set(top)
    assert set(options) == {"--dir", "--json", "--help"}
    assert set(shells) == {"bash", "zsh", "fish"}
    assert {"--json", "--debug", "--version", "--help"} <= set(root_opts)
    assert prefixed == ["completion"]


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_option_values_are_skipped_when_walking(shell: str, real_scripts: Path, home_env: dict[str, str]) -> None:
    # `--dir DIR` consumes DIR: the next word is an option again, not a subcommand.
    after_value, leaf_options = complete(shell, real_scripts, [
        "carsctl completion generate --dir /tmp --", "carsctl completion refresh "], env=home_env)
    assert set(after_value) == {"--check", "--dir", "--json", "--help"}
    # a command without positional arguments offers its options on an empty word; zsh keeps its own
    # convention (zstyle prefix-needed, on by default: options only after a `-`)
    if shell == "zsh":
        assert leaf_options == []
    else:
        assert {"--quiet", "--json", "--help"} <= set(leaf_options)


# --- dynamic values, on the stand-in app -----------------------------------------------------------

@pytest.mark.parametrize("shell", EACH_SHELL)
def test_task_aliases_and_names(shell: str, demo_scripts: Path, home_env: dict[str, str]) -> None:
    everything, prefixed = complete(shell, demo_scripts, ["carsctl task run ", "carsctl task run pub"], env=home_env)
    assert set(everything) == set(ALIASES) | set(TASK_NAMES)
    assert prefixed == ["publish-post"]


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_node_names(shell: str, demo_scripts: Path, home_env: dict[str, str]) -> None:
    first, second, destination = complete(shell, demo_scripts, [
        "carsctl worker stop ", "carsctl worker stop ai ", "carsctl inspect active -d "], env=home_env)
    assert set(first) == {"ai", "worker", "bare"}  # beat and the monitor (telegram) are not workers
    assert set(second) == {"ai", "worker", "bare"}
    assert set(destination) == {"ai", "worker", "bare"}


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_queue_names(shell: str, demo_scripts: Path, home_env: dict[str, str]) -> None:
    short, long_eq, task_queue = complete(shell, demo_scripts, [
        "carsctl purge -Q ", "carsctl purge --queues=", "carsctl task run process-post --queue "], env=home_env)
    assert set(short) == set(QUEUES)
    assert {value.removeprefix("--queues=") for value in long_eq} == set(QUEUES)
    assert set(task_queue) == set(QUEUES)


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_logs_inspect_pools_levels(shell: str, demo_scripts: Path, home_env: dict[str, str]) -> None:
    logs, inspect, pools, levels, after = complete(shell, demo_scripts, [
        "carsctl logs ", "carsctl inspect ", "carsctl worker start --pool ", "carsctl worker start -l ",
        "carsctl worker start --pool solo -"], env=home_env)
    assert set(logs) == {"worker", "beat", "monitor", "ai", "bare"}
    assert set(inspect) == {"active", "reserved", "scheduled", "ping"}
    assert set(pools) == {"prefork", "threads", "solo", "eventlet", "gevent"}
    assert set(levels) == {"debug", "info", "warning", "error", "critical", "fatal"}
    assert {"-Q", "--queues", "--concurrency", "--detach", "--foreground"} <= set(after)


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_home_from_dotenv_and_default(shell: str, demo_scripts: Path, tmp_path: Path) -> None:
    env: dict[str, str | None] = {"CARSCTL_HOME": None}
    with_dotenv = tmp_path / "project"
    make_home(with_dotenv / "state dir", nodes=("from-dotenv",))
    (with_dotenv / ".env").write_text('# settings\nREDIS_URL=redis://x\nexport CARSCTL_HOME="state dir"\n')
    plain = tmp_path / "plain"
    make_home(plain / ".carsctl", nodes=("from-default",))
    [dotenv_nodes] = complete(shell, demo_scripts, ["carsctl worker stop "], env=env, cwd=with_dotenv)
    [default_nodes] = complete(shell, demo_scripts, ["carsctl worker stop "], env=env, cwd=plain)
    assert dotenv_nodes == ["from-dotenv"]
    assert default_nodes == ["from-default"]


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_missing_task_cache_runs_carsctl_refresh(shell: str, demo_scripts: Path, tmp_path: Path) -> None:
    """The fallback writes the cache from the task modules' source; carsctl is the real one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "carsctl"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\nexec {sys.executable} -m carsctl "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "state"
    env = {"CARSCTL_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    first, second = complete(shell, demo_scripts, ["carsctl task run ", "carsctl task run "], env=env)
    expected = set(task_lines(static_task_names()))
    assert expected and set(first) == expected and set(second) == expected
    assert (home / "completion" / "tasks").is_file()
    assert (tmp_path / "calls").read_text().splitlines() == ["completion refresh --quiet"]


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_failed_refresh_is_tried_once_per_shell(shell: str, demo_scripts: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "carsctl"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\nexit 1\n')
    wrapper.chmod(0o755)
    env = {"CARSCTL_HOME": str(tmp_path / "state"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    first, second = complete(shell, demo_scripts, ["carsctl task run ", "carsctl task run "], env=env)
    assert first == second == []
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_real_dynamic_points(shell: str, real_scripts: Path, home_env: dict[str, str]) -> None:
    """The same points on the real tree."""
    paths = {spec.path for spec in command_specs()}
    expected = {
        "carsctl task run ": ("task run", set(ALIASES) | set(TASK_NAMES)),
        "carsctl worker stop ": ("worker stop", {"ai", "worker", "bare"}),
        "carsctl purge -Q ": ("purge", set(QUEUES)),
        "carsctl logs ": ("logs", {"worker", "beat", "monitor", "ai", "bare"}),
        "carsctl inspect active -d ": ("inspect active", {"ai", "worker", "bare"}),
        "carsctl worker start --pool ": ("worker start", {"prefork", "threads", "solo", "eventlet", "gevent"}),
        "carsctl worker restart ": ("worker restart", {"ai", "worker", "bare"}),
        "carsctl worker status ai ": ("worker status", {"ai", "worker", "bare"}),
    }
    assert {path for path, _values in expected.values()} <= set(paths)
    lines = list(expected)
    for line, answer in zip(lines, complete(shell, real_scripts, lines, env=home_env), strict=True):
        if "--pool" in line:  # the command may narrow the pools with a Literal type of its own
            assert answer and set(answer) <= expected[line][1], line
        else:
            assert set(answer) == expected[line][1], line


# --- shell specifics -------------------------------------------------------------------------------

@needs("bash")
def test_bash_file_and_directory_values_use_readline(real_scripts: Path) -> None:
    [dirs] = complete("bash", real_scripts, ["carsctl completion install --dir "])
    assert dirs == ["COMPOPT -o dirnames"]


@needs("zsh")
def test_zsh_sourced_after_compinit(real_scripts: Path, home_env: dict[str, str]) -> None:
    [top] = complete("zsh", real_scripts, ["carsctl co"], env=home_env, zsh_source=True)
    assert set(top) == {"config", "completion", "control"}


@pytest.mark.parametrize("shell", [p for p in EACH_SHELL if p.values[0] in ("zsh", "fish")])
def test_zsh_and_fish_complete_directories(shell: str, real_scripts: Path, tmp_path: Path) -> None:
    (tmp_path / "somedir").mkdir()
    [dirs] = complete(shell, real_scripts, ["carsctl completion install --dir som"], cwd=tmp_path)
    assert any(d.rstrip("/").endswith("somedir") for d in dirs), dirs


@pytest.mark.parametrize("shell", EACH_SHELL)
def test_generated_scripts_pass_the_shells_syntax_check(shell: str, real_scripts: Path, demo_scripts: Path) -> None:
    """The scripts, and their template too (its slots are comments, so it parses on its own)."""
    paths = [real_scripts / INSTALLED_NAMES[shell], demo_scripts / INSTALLED_NAMES[shell],
             _template_path(TEMPLATE_NAMES[shell])]
    if shell != "fish":
        paths.append(_template_path(SHARED_TEMPLATE))
    for path in paths:
        result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (path, result.stderr)


def _template_path(name: str) -> Path:
    path = Path(str(templates_dir() / name))
    assert path.is_file(), path  # package data of a checkout or an installed wheel: a real file
    return path


@needs("shellcheck")
def test_bash_passes_shellcheck(real_scripts: Path, demo_scripts: Path) -> None:
    """shellcheck, all severities, on the bash template, the fragment bash shares with zsh (shellcheck
    reads no zsh: it is linted as bash) and the bash scripts made from them (no shebang: --shell)."""
    paths = [_template_path(TEMPLATE_NAMES["bash"]), _template_path(SHARED_TEMPLATE),
             real_scripts / INSTALLED_NAMES["bash"], demo_scripts / INSTALLED_NAMES["bash"]]
    result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
