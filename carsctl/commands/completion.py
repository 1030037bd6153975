"""`carsctl completion`: the bash, zsh and fish scripts (generate, show, install) and their caches.

The shell is always named explicitly: detecting it from the parent process fails in containers and CI.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt

app = typer.Typer(help="Shell completion for bash, zsh and fish: generate, show, install, refresh.",
                  no_args_is_help=True)


class Shell(StrEnum):
    """The shells carsctl ships completion for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


ShellArg = Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)]


@app.command("generate")
def generate(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a script is stale.")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", file_okay=False, dir_okay=True,
                                                   help="Directory of the scripts (default: completions/).")] = None,
    json: JsonOpt = False,
) -> None:
    """Regenerate completions/ (carsctl.bash, _carsctl, carsctl.fish) from the command tree.

    With --check nothing is written: exit 1, naming each file that differs, when completions/ is stale.
    Example: carsctl completion generate --check
    """
    from carsctl.errors import OperationFailed, UsageError
    from carsctl.generated.completion_scripts import project_completions_dir, stale_scripts

    cli = obj(ctx)
    target = directory or project_completions_dir()
    if target is None:
        raise UsageError("no completions/ directory next to this carsctl", hint="pass --dir DIR")
    if check:
        stale = [path.name for path in stale_scripts(target)]
        if json or cli.json:
            cli.emit_json({"directory": str(target), "stale": stale})
        if stale:
            names = ", ".join(str(target / name) for name in stale)
            raise OperationFailed(f"stale completion scripts: {names} differ from the command tree",
                                  hint="run `carsctl completion generate`")
        cli.info(f"completion scripts in {target} are up to date")
        return
    changed = stale_scripts(target, rewrite=True)
    if json or cli.json:
        cli.emit_json({"directory": str(target), "written": [str(path) for path in changed]})
    else:
        cli.info(f"wrote {len(changed)} of 3 completion scripts in {target}"
                 + (f": {', '.join(path.name for path in changed)}" if changed else " (all up to date)"))


@app.command("show")
def show(shell: ShellArg) -> None:
    """Print the completion script of a shell on stdout.

    Example: carsctl completion show zsh > ~/.zfunc/_carsctl
    """
    from carsctl.generated.completion_scripts import generate as generate_script

    print(generate_script(shell.value), end="")


@app.command("install")
def install(
    ctx: typer.Context,
    shell: ShellArg,
    directory: Annotated[Path | None, typer.Option("--dir", file_okay=False, dir_okay=True,
                                                   help="Install into this directory instead.")] = None,
    json: JsonOpt = False,
) -> None:
    """Install the script into the user's completion directory for that shell.

    Lines to add to your shell's rc file, if any are needed, are printed on stdout.
    Example: carsctl completion install zsh >> ~/.zshrc
    """
    from carsctl.generated.completion_scripts import install_script

    cli = obj(ctx)
    result = install_script(shell.value, directory)
    if json or cli.json:
        cli.emit_json(result)
        return
    cli.info(f"installed {shell.value} completion in {result.path}")
    if result.rc_lines:
        cli.info(f"add to {result.rc_file}: {result.note}")
        print("\n".join(result.rc_lines))
    else:
        cli.info(result.note)


@app.command("refresh")
def refresh(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing (used by the scripts).")] = False,
    json: JsonOpt = False,
) -> None:
    """Rewrite the completion caches (task aliases and names) without importing Celery.

    The task names are read from the task modules' source; nothing connects to the broker.
    Example: carsctl completion refresh
    """
    from carsctl.generated.completion_cache import refresh_caches

    cli = obj(ctx)
    result = refresh_caches(cli.settings)
    if json or cli.json:
        cli.emit_json(result)
    elif not quiet:
        cli.info(f"{result.tasks} tasks ({result.aliases} aliases) in {result.tasks_file}"
                 + ("" if result.changed else " (unchanged)"))
