"""Write carsctl's bash, zsh and fish completion scripts from the command tree, and install them.

The scripts answer a TAB without starting Python: the whole command tree (commands, subcommands,
options, which options take a value, fixed choices) is written into them as shell data (`case`/`switch`
statements), and the few dynamic values are read from small files:

- task aliases and names: `$CARSCTL_HOME/completion/tasks` (see `carsctl.generated.completion_cache`); when it
  is missing the script runs `carsctl completion refresh --quiet` once, which neither imports Celery
  nor touches the network;
- node names: the file names of `$CARSCTL_HOME/nodes/*.json` whose `"kind"` is worker (beat and the
  monitor keep state files there too);
- queue names, pools, log levels, shells: static, written into the scripts.

`CARSCTL_HOME` is taken from the environment, else from a `CARSCTL_HOME=` line of `./.env`, else
`./.carsctl`, as `cars_bot.config` does.

The command tree comes from `carsctl.generated.completion_specs`. The shell code itself is package data
in `templates/` (carsctl.bash, carsctl.zsh, carsctl.fish, tables.sh shared by bash and zsh, header.txt),
where shellcheck and the shells' own syntax checks can read it; this module only fills in the tables.
In a template, a line `# @NAME@` is replaced by the slot NAME (HEADER, TABLES, CMD_CASES, OPT_CASES,
ARG_CASES) and lines starting with `#%` are notes for the template's reader, dropped from the output.
The output is deterministic: `carsctl completion generate --check` compares it with `completions/`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.generated.completion_specs import SHELLS, CommandSpec, Values, command_specs

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: The file each shell's script is written to, in `completions/` and when installed.
SCRIPT_NAMES: dict[str, str] = {"bash": "carsctl.bash", "zsh": "_carsctl", "fish": "carsctl.fish"}
INSTALLED_NAMES: dict[str, str] = {"bash": "carsctl", "zsh": "_carsctl", "fish": "carsctl.fish"}
#: Each shell's template in `carsctl/generated/templates/`.
TEMPLATE_NAMES: dict[str, str] = {"bash": "carsctl.bash", "zsh": "carsctl.zsh", "fish": "carsctl.fish"}
#: The fragment bash and zsh share (the three case-table functions), and the comment header of all three.
SHARED_TEMPLATE = "tables.sh"
HEADER_TEMPLATE = "header.txt"

#: A whole template line `# @NAME@` (any indentation): the place of slot NAME.
_SLOT = re.compile(r"^[ \t]*# @([A-Z_]+)@$", re.MULTILINE)


# --- templates -------------------------------------------------------------------------------------

def templates_dir() -> Traversable:
    """The templates' directory: package data, read through importlib.resources (a real directory in a
    checkout or an installed wheel, so shellcheck and the shells can read the files too)."""
    return resources.files("carsctl.generated") / "templates"


@cache
def template(name: str) -> str:
    """A template's text without its `#%` note lines."""
    text = (templates_dir() / name).read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#%"))


def _fill(text: str, slots: Mapping[str, str]) -> str:
    """Replace each `# @NAME@` line whose NAME is in `slots` by that slot's text; leave the others."""
    return _SLOT.sub(lambda match: slots.get(match[1], match[0]), text)


def _render(shell: str, tables: Mapping[str, str]) -> str:
    """A shell's template with the header and the shared fragment pulled in, then its tables filled in."""
    header = template(HEADER_TEMPLATE).replace("@SHELL@", shell).rstrip("\n")
    text = _fill(template(TEMPLATE_NAMES[shell]), {"HEADER": header, "TABLES": template(SHARED_TEMPLATE).rstrip("\n")})
    text = _fill(text, tables)
    left = _SLOT.search(text)
    if left:
        raise ValueError(f"{TEMPLATE_NAMES[shell]}: no value for the slot {left[0].strip()}")
    return text


# --- quoting ---------------------------------------------------------------------------------------

def sh_quote(text: str) -> str:
    """A bash/zsh single word."""
    return shlex.quote(text)


def fish_quote(text: str) -> str:
    """A fish single word."""
    if text and re.fullmatch(r"[\w@%+=:,./-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _bash_item(name: str, _help_text: str) -> str:
    return sh_quote(name)  # bash lists names only


def _zsh_item(name: str, help_text: str) -> str:
    name = name.replace("\\", "\\\\").replace(":", "\\:")
    return sh_quote(f"{name}:{help_text}" if help_text else name)


def _fish_item(name: str, help_text: str) -> str:
    return fish_quote(name) + ("\\t" + fish_quote(help_text) if help_text else "")


def _value_words(values: Values, quote: Callable[[str], str]) -> str:
    return " ".join(quote(word) for word in (values.kind, *values.words))


# --- the tables ------------------------------------------------------------------------------------

def _arg_cases(specs: Sequence[CommandSpec], emit: Callable[[str, int, Values, bool], str]) -> str:
    """The positional-argument cases of every command; `emit(path, position, values, rest)` writes one."""
    lines: list[str] = []
    for spec in specs:
        if spec.is_group or not spec.arguments:
            continue
        last = len(spec.arguments)
        for position, values in enumerate(spec.arguments, start=1):
            lines.append(emit(spec.path, position, values, position == last and spec.variadic))
    return "\n".join(lines)


def _sh_tables(specs: Sequence[CommandSpec], item: Callable[[str, str], str]) -> dict[str, str]:
    """The case tables of bash and zsh, which differ only in how a subcommand or option is listed."""
    cmd_cases: list[str] = []
    for spec in specs:
        parts = []
        if spec.subcommands:
            parts.append("_cc_subs=(" + " ".join(item(n, h) for n, h in spec.subcommands) + ")")
        if spec.options:
            parts.append("_cc_opts=(" + " ".join(item(n, o.help) for o in spec.options for n in o.names) + ")")
        cmd_cases.append(f"        {sh_quote(spec.path)}) {' '.join(parts) or ':'} ;;")
    opt_cases = []
    for spec in specs:
        for option in spec.value_options:
            label = "|".join(sh_quote(f"{spec.path}|{name}") for name in option.names)
            opt_cases.append(f"        {label}) _cc_val=({_value_words(option.values, sh_quote)}); "
                             f"_cc_nargs={option.nargs} ;;")

    def emit(path: str, position: int, values: Values, rest: bool) -> str:
        label = sh_quote(f"{path}|") + "*" if rest else sh_quote(f"{path}|{position}")
        return f"        {label}) _cc_val=({_value_words(values, sh_quote)}) ;;"

    return {"CMD_CASES": "\n".join(cmd_cases), "OPT_CASES": "\n".join(opt_cases),
            "ARG_CASES": _arg_cases(specs, emit)}


def _fish_tables(specs: Sequence[CommandSpec]) -> dict[str, str]:
    """The `switch` tables of fish."""
    cmd_cases: list[str] = []
    for spec in specs:
        cmd_cases.append(f"        case {fish_quote(spec.path)}")
        if spec.subcommands:
            cmd_cases.append("            set -g __carsctl_subs "
                             + " ".join(_fish_item(n, h) for n, h in spec.subcommands))
        if spec.options:
            cmd_cases.append("            set -g __carsctl_opts "
                             + " ".join(_fish_item(n, o.help) for o in spec.options for n in o.names))
    opt_cases = []
    for spec in specs:
        for option in spec.value_options:
            label = " ".join(fish_quote(f"{spec.path}|{name}") for name in option.names)
            opt_cases.append(f"        case {label}\n"
                             f"            set -g __carsctl_val {_value_words(option.values, fish_quote)}\n"
                             f"            set -g __carsctl_nargs {option.nargs}")

    def emit(path: str, position: int, values: Values, rest: bool) -> str:
        label = fish_quote(f"{path}|*" if rest else f"{path}|{position}")  # quoted * still globs in a case
        return f"        case {label}\n            set -g __carsctl_val {_value_words(values, fish_quote)}"

    return {"CMD_CASES": "\n".join(cmd_cases), "OPT_CASES": "\n".join(opt_cases),
            "ARG_CASES": _arg_cases(specs, emit)}


_TABLES: dict[str, Callable[[Sequence[CommandSpec]], dict[str, str]]] = {
    "bash": lambda specs: _sh_tables(specs, _bash_item),  # bash 4+, with or without bash-completion
    "zsh": lambda specs: _sh_tables(specs, _zsh_item),  # a `#compdef` file for $fpath, or sourced after compinit
    "fish": _fish_tables,  # fish 3.1+
}


# --- the three scripts -----------------------------------------------------------------------------

def generate(shell: str, app: Any | None = None, specs: Sequence[CommandSpec] | None = None) -> str:
    """One shell's script for `app` (default: the carsctl app), or for already walked `specs`."""
    if shell not in _TABLES:
        raise ValueError(f"unsupported shell {shell!r}: use one of {', '.join(SHELLS)}")
    return _render(shell, _TABLES[shell](command_specs(app) if specs is None else specs))


def generate_all(app: Any | None = None) -> dict[str, str]:
    """File name in `completions/` -> content, for the three shells."""
    specs = command_specs(app)
    return {SCRIPT_NAMES[shell]: generate(shell, specs=specs) for shell in SHELLS}


def project_completions_dir() -> Path | None:
    """The source tree's `completions/` directory (None when carsctl is not run from a checkout)."""
    root = Path(__file__).resolve().parents[2]
    return root / "completions" if (root / "pyproject.toml").is_file() else None


def stale_scripts(directory: Path, app: Any | None = None, *, rewrite: bool = False) -> list[Path]:
    """The scripts in `directory` that are missing or differ from a fresh generation (in SHELLS order).

    With `rewrite` they are written, so the result is what changed (`carsctl completion generate`);
    without, nothing is touched (`--check`).
    """
    if rewrite:
        directory.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, content in generate_all(app).items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(path)
            if rewrite:
                path.write_text(content, encoding="utf-8")
    return stale


# --- installing ------------------------------------------------------------------------------------

#: Where bash-completion (2.x) is usually installed; it then loads our file from the user directory.
_BASH_COMPLETION_FILES = (
    "/usr/share/bash-completion/bash_completion",
    "/etc/bash_completion",
    "/usr/local/etc/profile.d/bash_completion.sh",
    "/opt/homebrew/etc/profile.d/bash_completion.sh",
)


def default_install_dir(shell: str, environ: dict[str, str] | None = None) -> Path:
    """The user's completion directory of a shell (XDG variables honoured)."""
    import os

    env = dict(os.environ) if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    if shell == "bash":
        return Path(env.get("XDG_DATA_HOME") or home / ".local/share") / "bash-completion" / "completions"
    if shell == "zsh":
        return home / ".zfunc"
    if shell == "fish":
        return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "fish" / "completions"
    raise ValueError(f"unsupported shell {shell!r}: use one of {', '.join(SHELLS)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _display(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


@dataclass(frozen=True, slots=True)
class InstalledScript:
    """A script written into a shell's completion directory, and the rc lines the user still needs."""

    shell: str
    path: str
    rc_file: str
    rc_lines: tuple[str, ...]  # none when the shell finds the script by itself
    note: str  # one line for the user


def install_script(shell: str, directory: Path | None = None,
                   environ: dict[str, str] | None = None) -> InstalledScript:
    """Write a shell's script into its completion directory (or `directory`)."""
    import os

    env = dict(os.environ) if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    standard = default_install_dir(shell, env)
    target_dir = (directory or standard).expanduser()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / INSTALLED_NAMES[shell]
    path.write_text(generate(shell), encoding="utf-8")
    shown = _display(target_dir, home)
    rc_lines: list[str] = []
    if shell == "bash":
        rc_file = home / ".bashrc"
        has_loader = any(Path(p).is_file() for p in _BASH_COMPLETION_FILES)
        if target_dir.resolve() != standard.resolve() or not has_loader:
            line = f"source {_display(path, home)}"
            if str(path) not in _read(rc_file) and _display(path, home) not in _read(rc_file):
                rc_lines.append(line)
        note = ("bash-completion loads it on the first TAB" if not rc_lines
                else "bash-completion will not find it there: source it from ~/.bashrc")
    elif shell == "zsh":
        rc_file = Path(env.get("ZDOTDIR") or home) / ".zshrc"
        rc = _read(rc_file)
        if not any("fpath" in line and (shown in line or str(target_dir) in line or
                                        (shown == "~/.zfunc" and "$HOME/.zfunc" in line))
                   for line in rc.splitlines()):
            rc_lines.append(f"fpath=({shown} $fpath)")
        if rc_lines or "compinit" not in rc:
            rc_lines.append("autoload -Uz compinit && compinit")
        note = ("the fpath line must come before compinit; then start a new shell "
                "(rm -f ~/.zcompdump if the completion does not appear)" if rc_lines
                else "start a new shell (rm -f ~/.zcompdump if the completion does not appear)")
    else:
        rc_file = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "fish" / "config.fish"
        if target_dir.resolve() != standard.resolve():
            line = f"set -p fish_complete_path {shown}"
            if line not in _read(rc_file):
                rc_lines.append(line)
        note = "fish loads it on the first TAB" if not rc_lines else "fish does not look there by itself"
    return InstalledScript(shell=shell, path=str(path), rc_file=_display(rc_file, home), rc_lines=tuple(rc_lines),
                           note=note)
