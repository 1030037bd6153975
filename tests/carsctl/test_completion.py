"""`carsctl completion`: the generator, completions/ staleness, show/install/refresh, and the caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cars_bot.config import QUEUES
from carsctl.generated.completion_cache import (
    remember_app,
    static_task_names,
    task_alias,
    task_lines,
    tasks_file,
)
from carsctl.generated.completion_scripts import (
    SCRIPT_NAMES,
    generate,
    generate_all,
    install_script,
    project_completions_dir,
    stale_scripts,
)
from carsctl.generated.completion_specs import (
    FILES,
    LOG_LEVELS,
    LOG_TARGETS,
    NODES,
    POOLS,
    SHELL_VALUES,
    TASKS,
    CommandSpec,
    Values,
    command_specs,
)
from tests.carsctl.cli import invoke
from tests.carsctl.completion_demo import demo_app

HEAVY = ("celery", "kombu", "redis", "sqlalchemy", "telethon", "gspread", "openai")


def _by_path(specs: list[CommandSpec]) -> dict[str, CommandSpec]:
    return {spec.path: spec for spec in specs}


def _option(spec: CommandSpec, name: str) -> Values:
    for option in spec.options:
        if name in option.names:
            return option.values
    raise AssertionError(f"{spec.path!r} has no option {name}")


# --- completions/ is generated, and a test fails when it is stale ----------------------------------

def test_committed_scripts_match_a_fresh_generation() -> None:
    """completions/ must be regenerated after any change to the command tree."""
    directory = project_completions_dir()
    assert directory is not None
    stale = [path.name for path in stale_scripts(directory)]
    assert not stale, (f"stale completion scripts in {directory}: {', '.join(stale)}; "
                       "run `carsctl completion generate` and commit completions/")


def test_generate_check_names_the_stale_file(tmp_path: Path) -> None:
    result = invoke("completion", "generate", "--dir", str(tmp_path))
    assert result.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted(SCRIPT_NAMES.values())
    assert invoke("completion", "generate", "--check", "--dir", str(tmp_path)).exit_code == 0
    (tmp_path / "_carsctl").write_text((tmp_path / "_carsctl").read_text() + "# edited by hand\n")
    (tmp_path / "carsctl.fish").unlink()
    result = invoke("completion", "generate", "--check", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "_carsctl" in result.stderr and "carsctl.fish" in result.stderr and "carsctl.bash" not in result.stderr
    assert "carsctl completion generate" in result.stderr
    assert stale_scripts(tmp_path) == [tmp_path / "_carsctl", tmp_path / "carsctl.fish"]  # --check writes nothing
    assert not (tmp_path / "carsctl.fish").exists()
    assert stale_scripts(tmp_path, rewrite=True) == [tmp_path / "_carsctl", tmp_path / "carsctl.fish"]
    assert stale_scripts(tmp_path) == []


def test_generation_is_deterministic_across_processes() -> None:
    """The help option's names come from a set: the output must not depend on the hash seed."""
    code = ("import hashlib; from carsctl.generated.completion_scripts import generate_all\n"
            "print(hashlib.sha256(repr(sorted(generate_all().items())).encode()).hexdigest())")
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and digests != {""}


def test_scripts_hold_the_tree_as_data() -> None:
    scripts = generate_all()
    for spec in command_specs():
        for content in scripts.values():
            assert all(name in content for name, _help in spec.subcommands)
            assert all(name in content for option in spec.options for name in option.names)
    for content in scripts.values():
        assert "carsctl completion refresh --quiet" in content  # the only program a TAB may start
        assert "#%" not in content and "# @" not in content  # template notes dropped, every slot filled


# --- the value table -------------------------------------------------------------------------------

def test_values_of_the_stand_in_commands() -> None:
    specs = _by_path(command_specs(demo_app()))
    assert set(specs[""].subcommands) >= {("worker", "Worker nodes."), ("task", "Tasks.")}
    assert specs["task run"].arguments == (TASKS, Values())
    assert specs["task run"].variadic
    assert specs["worker stop"].arguments == (NODES,) and specs["worker stop"].variadic
    assert _option(specs["purge"], "-Q") == Values(tuple(QUEUES))
    assert _option(specs["task run"], "--queue") == Values(tuple(QUEUES))
    assert _option(specs["worker start"], "--pool") == POOLS
    assert _option(specs["worker start"], "-l") == LOG_LEVELS
    assert _option(specs["worker start"], "--concurrency") == Values()
    assert _option(specs["inspect ping"], "-d") == NODES
    assert specs["logs"].arguments == (LOG_TARGETS,)
    assert [o.nargs for o in specs["worker stop"].options if "--force" in o.names] == [0]
    assert {"--detach", "--foreground"} <= {n for o in specs["worker start"].options for n in o.names}


def test_choices_come_from_the_parameter_type() -> None:
    specs = _by_path(command_specs())
    assert specs["completion show"].arguments == (SHELL_VALUES,)
    assert specs["completion install"].arguments == (SHELL_VALUES,)
    assert _option(specs["completion install"], "--dir") == Values(source="dirs")
    assert specs["post import"].arguments == (FILES,)


@pytest.mark.parametrize(("path", "where", "expected"), [
    ("task run", "#1", TASKS),
    ("worker stop", "#1", NODES),
    ("logs", "#1", LOG_TARGETS),
    ("purge", "-Q", Values(tuple(QUEUES))),
    ("task run", "-Q", Values(tuple(QUEUES))),
    ("task run", "--from-file", FILES),
    ("logs", "--level", LOG_LEVELS),
    ("inspect active", "-d", NODES),
    ("worker start", "--pool", POOLS),
    ("worker start", "--loglevel", LOG_LEVELS),
])
def test_real_commands_get_their_values(path: str, where: str, expected: Values) -> None:
    """The same table on the real tree."""
    spec = _by_path(command_specs())[path]
    values = spec.arguments[int(where[1:]) - 1] if where.startswith("#") else _option(spec, where)
    if expected in (POOLS, LOG_LEVELS):
        # the command may narrow them with choices of its own (a Literal type), which then win
        assert values.kind == "w" and values.words and set(values.words) <= set(expected.words)
    else:
        assert values == expected


def test_inspect_offers_its_subcommands() -> None:
    specs = _by_path(command_specs())
    assert specs["inspect"].is_group and "inspect" in {name for name, _ in specs[""].subcommands}


# --- show / install / refresh ----------------------------------------------------------------------

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_prints_the_script(shell: str) -> None:
    result = invoke("completion", "show", shell)
    assert result.exit_code == 0 and result.stdout == generate(shell)


def test_show_rejects_an_unknown_shell() -> None:
    result = invoke("completion", "show", "tcsh")
    assert result.exit_code == 2


def test_install_paths_and_rc_lines(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    bash = install_script("bash", environ=env)
    assert bash.path == str(tmp_path / ".local/share/bash-completion/completions/carsctl")
    zsh = install_script("zsh", environ=env)
    assert zsh.path == str(tmp_path / ".zfunc/_carsctl")
    assert zsh.rc_lines == ("fpath=(~/.zfunc $fpath)", "autoload -Uz compinit && compinit")
    (tmp_path / ".zshrc").write_text("fpath+=~/.zfunc\nautoload -Uz compinit\ncompinit\n")
    assert install_script("zsh", environ=env).rc_lines == ()
    fish = install_script("fish", environ=env)
    assert fish.path == str(tmp_path / ".config/fish/completions/carsctl.fish") and fish.rc_lines == ()
    xdg = install_script("bash", environ={**env, "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert xdg.path == str(tmp_path / "xdg/bash-completion/completions/carsctl")
    for shell in ("bash", "zsh", "fish"):
        assert Path(install_script(shell, environ=env).path).read_text() == generate(shell)


def test_install_into_another_directory_says_what_to_add(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    elsewhere = tmp_path / "elsewhere"
    assert install_script("bash", elsewhere, environ=env).rc_lines == ("source ~/elsewhere/carsctl",)
    assert install_script("fish", elsewhere, environ=env).rc_lines == ("set -p fish_complete_path ~/elsewhere",)
    assert install_script("zsh", elsewhere, environ=env).rc_lines[0] == "fpath=(~/elsewhere $fpath)"


def test_install_command(tmp_path: Path) -> None:
    result = invoke("completion", "install", "zsh", env={"HOME": str(tmp_path), "ZDOTDIR": None})
    assert result.exit_code == 0
    assert (tmp_path / ".zfunc" / "_carsctl").read_text() == generate("zsh")
    # the rc lines are data on stdout (`... >> ~/.zshrc`), the rest goes to stderr
    assert result.stdout.splitlines() == ["fpath=(~/.zfunc $fpath)", "autoload -Uz compinit && compinit"]
    assert "installed zsh completion" in result.stderr
    result = invoke("completion", "install", "fish", "--dir", str(tmp_path / "d"), "--json",
                    env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": None})
    assert json.loads(result.stdout) == {"shell": "fish", "path": str(tmp_path / "d" / "carsctl.fish"),
                                         "rc_file": "~/.config/fish/config.fish",
                                         "rc_lines": ["set -p fish_complete_path ~/d"],
                                         "note": "fish does not look there by itself"}


def test_refresh_command_writes_the_task_cache(settings: object) -> None:
    result = invoke("completion", "refresh")
    assert result.exit_code == 0 and result.stdout == ""
    lines = tasks_file(settings).read_text().splitlines()
    assert lines == task_lines(static_task_names()) and lines
    assert "(unchanged)" in invoke("completion", "refresh").stderr
    assert invoke("completion", "refresh", "--quiet").stderr == ""
    names = static_task_names()
    assert json.loads(invoke("completion", "refresh", "--json").stdout) == {
        "tasks_file": str(tasks_file(settings)), "tasks": len(names), "aliases": len(lines) - len(names),
        "changed": False, "written": True}


def test_refresh_imports_no_celery_and_opens_no_socket(tmp_path: Path) -> None:
    code = (
        "import socket, sys\n"
        "def refuse(*args, **kwargs):\n    raise AssertionError('network touched')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse\n"
        "from carsctl.app import app\n"
        "try:\n    app(['completion', 'refresh', '--quiet'], prog_name='carsctl')\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CARSCTL_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HEAVY=", out.stdout
    assert (tmp_path / "completion" / "tasks").read_text().splitlines() == task_lines(static_task_names())


# --- the caches ------------------------------------------------------------------------------------

def test_task_alias() -> None:
    assert task_alias("cars_bot.tasks.ai_tasks.process_post_task") == "process-post"
    assert task_alias("cars_bot.tasks.monitoring_tasks.collect_stats_task") == "collect-stats"
    assert task_lines(["cars_bot.tasks.b.y_task", "cars_bot.tasks.a.x_task"]) == [
        "x", "y", "cars_bot.tasks.a.x_task", "cars_bot.tasks.b.y_task"]


def test_static_task_names_cover_every_registered_task() -> None:
    """The source scan (used without Celery) finds every task the app registers."""
    from cars_bot.celery_app import app

    app.loader.import_default_modules()
    registered = {name for name in app.tasks if name.startswith("cars_bot.")}
    assert registered and registered <= set(static_task_names())


def test_remember_app_writes_only_on_change(settings: object) -> None:
    app = SimpleNamespace(tasks={"cars_bot.tasks.extra_tasks.extra_thing_task": None, "celery.chord": None})
    remember_app(settings, app)
    path = tasks_file(settings)
    lines = path.read_text().splitlines()
    assert "extra-thing" in lines and "cars_bot.tasks.extra_tasks.extra_thing_task" in lines
    assert "celery.chord" not in lines and set(static_task_names()) <= set(lines)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    remember_app(settings, app)
    assert path.stat().st_mtime_ns == before - 10**9  # unchanged content: not rewritten


def test_remember_app_never_breaks_the_command(settings: object, tmp_path: Path) -> None:
    class Broken:
        @property
        def tasks(self) -> dict[str, object]:
            raise RuntimeError("not configured")

    remember_app(settings, Broken())
    assert tasks_file(settings).read_text().splitlines() == task_lines(static_task_names())
