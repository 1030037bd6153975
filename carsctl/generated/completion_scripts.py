"""Generate carsctl's bash, zsh and fish completion scripts from the Typer command tree.

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

Which parameter takes which kind of value is decided, in order, by the parameter's own choices (an
Enum or Literal type), then by the explicit table `VALUE_SOURCES` below (keyed by command path and
parameter name, so it applies as soon as a command with that shape appears), then by a path type.
The output is deterministic: `carsctl completion generate --check` compares it with `completions/`.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

PROG = "carsctl"
SHELLS: tuple[str, ...] = ("bash", "zsh", "fish")
#: The file each shell's script is written to, in `completions/` and when installed.
SCRIPT_NAMES: dict[str, str] = {"bash": "carsctl.bash", "zsh": "_carsctl", "fish": "carsctl.fish"}
INSTALLED_NAMES: dict[str, str] = {"bash": "carsctl", "zsh": "_carsctl", "fish": "carsctl.fish"}

_HELP_LIMIT = 70


@dataclass(frozen=True)
class Values:
    """How one value completes: fixed words, plus at most one dynamic source.

    `source` is "" (the words only; no words means free text), "tasks" (the task cache), "nodes"
    (worker node names from the state directory), "files" or "dirs" (the shell's own path completion).
    """

    words: tuple[str, ...] = ()
    source: str = ""

    @property
    def kind(self) -> str:
        """The one-letter kind the scripts switch on: w t n f d, or - for free text."""
        letter = {"tasks": "t", "nodes": "n", "files": "f", "dirs": "d"}.get(self.source, "")
        return letter or ("w" if self.words else "-")


FREE_TEXT = Values()
TASKS = Values(source="tasks")
NODES = Values(source="nodes")
FILES = Values(source="files")
DIRS = Values(source="dirs")
#: `carsctl logs <TAB>`: the fixed log names, then the worker nodes' own logs.
LOG_TARGETS = Values(("worker", "beat", "monitor"), "nodes")
POOLS = Values(("prefork", "threads", "solo", "eventlet", "gevent"))
LOG_LEVELS = Values(("debug", "info", "warning", "error", "critical", "fatal"))
SHELL_VALUES = Values(SHELLS)


def queue_values() -> Values:
    """The project's queue names (static: `cars_bot.config.QUEUES`, stdlib-only import)."""
    from cars_bot.config import QUEUES

    return Values(tuple(QUEUES))


def value_sources() -> tuple[tuple[str, str, Values], ...]:
    """The explicit table: (command path pattern, parameter key, values); the first match wins.

    The path pattern is an fnmatch pattern over the space-separated command path ("*" is every
    command). The key is a parameter's Python name, a long option name ("--pool"; short ones are too
    ambiguous across commands), or "#1", "#2"... for the command's positional arguments by position and
    "#*" for any of them, whatever their names. Used only for parameters without choices of their own.
    """
    queues = queue_values()
    return (
        ("task run", "#1", TASKS),
        ("worker *", "#*", NODES),
        ("task run", "from_file", FILES),
        ("logs", "#1", LOG_TARGETS),
        ("logs", "target", LOG_TARGETS),
        ("logs", "level", LOG_LEVELS),
        ("post import", "#1", FILES),
        ("*", "task", TASKS),
        ("*", "task_name", TASKS),
        ("*", "queue", queues),
        ("*", "queues", queues),
        ("*", "--queue", queues),
        ("*", "--queues", queues),
        ("*", "pool", POOLS),
        ("*", "--pool", POOLS),
        ("*", "loglevel", LOG_LEVELS),
        ("*", "log_level", LOG_LEVELS),
        ("*", "--loglevel", LOG_LEVELS),
        ("*", "--log-level", LOG_LEVELS),
        ("*", "destination", NODES),
        ("*", "--destination", NODES),
        ("*", "node", NODES),
        ("*", "nodes", NODES),
        ("*", "shell", SHELL_VALUES),
    )


@dataclass(frozen=True)
class OptionSpec:
    """An option of a command: its spellings, help, how many values it takes, how they complete."""

    names: tuple[str, ...]
    help: str
    nargs: int
    values: Values = FREE_TEXT


@dataclass(frozen=True)
class CommandSpec:
    """One command or group, by its space-separated path ("" is the root)."""

    path: str
    help: str
    subcommands: tuple[tuple[str, str], ...] = ()
    options: tuple[OptionSpec, ...] = ()
    arguments: tuple[Values, ...] = ()
    variadic: bool = False  # the last argument takes any number of values
    value_options: tuple[OptionSpec, ...] = field(default=(), repr=False)

    @property
    def is_group(self) -> bool:
        return bool(self.subcommands)


# --- walking the command tree ----------------------------------------------------------------------

def _short_help(text: str | None) -> str:
    """The first line of a help text, on one line, at most _HELP_LIMIT characters."""
    lines = [line.strip() for line in (text or "").replace("\b", "").strip().splitlines()]
    first = " ".join(lines[0].split()) if lines else ""
    if len(first) <= _HELP_LIMIT:
        return first
    return first[:_HELP_LIMIT - 3].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


def _choices(param: Any) -> tuple[str, ...] | None:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    if choices is None:
        return None
    return tuple(str(c.value) if isinstance(c, Enum) else str(c) for c in choices)


def _path_values(param: Any) -> Values | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return None
    if getattr(descriptor, "is_file", False):
        return FILES
    if getattr(descriptor, "is_path", False):
        return DIRS if descriptor.path_type == "dir" else FILES
    return None


def _lookup(path: str, keys: Sequence[str]) -> Values | None:
    for pattern, key, values in value_sources():
        if key in keys and fnmatch.fnmatchcase(path, pattern):
            return values
    return None


def param_values(path: str, param: Any, position: int | None = None) -> Values:
    """How the value of `param` of the command at `path` completes (position: 1-based, arguments)."""
    choices = _choices(param)
    if choices is not None:
        return Values(choices)
    if position is not None:
        keys: list[str] = [f"#{position}", "#*", param.name or ""]
    else:
        keys = [param.name or "", *param.opts, *param.secondary_opts]
    return _lookup(path, keys) or _path_values(param) or FREE_TEXT


def _sorted_names(names: Sequence[str]) -> tuple[str, ...]:
    # The help option's names come from a set: sort every option's names for a stable output.
    return tuple(sorted(names, key=lambda name: (name.startswith("--"), name)))


def _option_spec(path: str, param: Any) -> OptionSpec:
    takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    nargs = max(int(param.nargs or 1), 1) if takes_value else 0
    names = _sorted_names(param.opts) + _sorted_names(param.secondary_opts)
    values = param_values(path, param) if takes_value else FREE_TEXT
    return OptionSpec(names=names, help=_short_help(getattr(param, "help", None)), nargs=nargs, values=values)


def _command_spec(path: str, command: Any, ctx: Any) -> CommandSpec:
    options: list[OptionSpec] = []
    arguments: list[Values] = []
    variadic = False
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if getattr(param, "param_type_name", "") == "option":
            options.append(_option_spec(path, param))
        elif getattr(param, "param_type_name", "") == "argument" and not variadic:
            nargs = int(param.nargs)
            if nargs < 0:
                arguments.append(param_values(path, param, len(arguments) + 1))
                variadic = True
            else:
                for _ in range(nargs):
                    arguments.append(param_values(path, param, len(arguments) + 1))
    subcommands: list[tuple[str, str]] = []
    if _is_group(command):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                subcommands.append((name, _short_help(sub.short_help or sub.help)))
    return CommandSpec(path=path, help=_short_help(command.short_help or command.help),
                       subcommands=tuple(subcommands), options=tuple(options), arguments=tuple(arguments),
                       variadic=variadic, value_options=tuple(o for o in options if o.nargs))


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands") and hasattr(command, "get_command")


def _walk(command: Any, name: str, path: str, parent: Any) -> Iterator[CommandSpec]:
    ctx = command.context_class(command, parent=parent, info_name=name, **command.context_settings)
    spec = _command_spec(path, command, ctx)
    yield spec
    if _is_group(command):
        for sub_name, _help in spec.subcommands:
            sub = command.get_command(ctx, sub_name)
            yield from _walk(sub, sub_name, f"{path} {sub_name}".strip(), ctx)


def command_specs(app: typer.Typer | Any | None = None) -> list[CommandSpec]:
    """Every command of the tree, depth first, root first (default: the carsctl app).

    `app` may be a Typer app or an already built click command.
    """
    import typer.main

    if app is None:
        from carsctl.app import app as carsctl_app

        app = carsctl_app
    command = typer.main.get_command(app) if hasattr(app, "registered_commands") else app
    return list(_walk(command, PROG, "", None))


# --- quoting ---------------------------------------------------------------------------------------

def sh_quote(text: str) -> str:
    """A bash/zsh single word."""
    return shlex.quote(text)


def fish_quote(text: str) -> str:
    """A fish single word."""
    if text and re.fullmatch(r"[\w@%+=:,./-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _zsh_item(name: str, help_text: str) -> str:
    name = name.replace("\\", "\\\\").replace(":", "\\:")
    return sh_quote(f"{name}:{help_text}" if help_text else name)


def _fish_item(name: str, help_text: str) -> str:
    return fish_quote(name) + ("\\t" + fish_quote(help_text) if help_text else "")


def _value_words(values: Values, quote: Any) -> str:
    return " ".join(quote(word) for word in (values.kind, *values.words))


# --- bash ------------------------------------------------------------------------------------------

_HEADER = """\
{comment} {shell} completion for carsctl.
{comment} Generated by `carsctl completion generate` from the carsctl command tree: do not edit by hand.
{comment} Commands, options and fixed choices are data in this file, so no Python runs on TAB. Task names
{comment} come from $CARSCTL_HOME/completion/tasks and node names from $CARSCTL_HOME/nodes/*.json, where
{comment} CARSCTL_HOME is the environment variable, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
{comment} Install: carsctl completion install {shell}
"""

_BASH_BODY = r"""
# _carsctl_cmd PATH: the subcommands and options of a command path.
_carsctl_cmd() {
    _cc_subs=() _cc_opts=()
    case $1 in
@CMD_CASES@
    esac
}

# _carsctl_optval PATH OPTION: status 0 and the value spec in _cc_val (kind, words...) and the number
# of values in _cc_nargs when the option takes a value; status 1 for a flag or an unknown option.
_carsctl_optval() {
    case "$1|$2" in
@OPT_CASES@
        *) return 1 ;;
    esac
}

# _carsctl_argval PATH N: status 0 and the value spec in _cc_val when the command takes an N-th
# positional argument.
_carsctl_argval() {
    case "$1|$2" in
@ARG_CASES@
        *) return 1 ;;
    esac
}

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
_carsctl_home() {
    _cc_home=${CARSCTL_HOME-}
    if [[ -z $_cc_home && -f .env && -r .env ]]; then
        local line
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line#"${line%%[![:space:]]*}"}
            line=${line#export }
            if [[ $line =~ ^CARSCTL_HOME[[:space:]]*= ]]; then
                line=${line#*=}
                line=${line#"${line%%[![:space:]]*}"}
                line=${line%"${line##*[![:space:]]}"}
                case $line in
                    \"*\") line=${line:1:${#line}-2} ;;
                    \'*\') line=${line:1:${#line}-2} ;;
                    *) line=${line%%[[:space:]]#*} ;;
                esac
                _cc_home=$line
            fi
        done < .env
    fi
    _cc_home=${_cc_home:-.carsctl}
    [[ $_cc_home == "~/"* ]] && _cc_home=$HOME/${_cc_home#"~/"}
}

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
_carsctl_tasks() {
    local file=$_cc_home/completion/tasks line
    if [[ ! -f $file && ${_carsctl_refreshed-} != "$_cc_home" ]]; then
        _carsctl_refreshed=$_cc_home
        if type -P carsctl >/dev/null 2>&1; then
            CARSCTL_HOME=$_cc_home command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        fi
    fi
    [[ -f $file && -r $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -n $line ]] && _cc_dyn+=("$line")
    done < "$file"
}

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
_carsctl_nodes() {
    local file name line kind restore=
    shopt -q failglob && { restore=1; shopt -u failglob; }
    for file in "$_cc_home"/nodes/*.json; do
        [[ -f $file && -r $file ]] || continue
        kind=worker
        while IFS= read -r line; do
            if [[ $line == *'"kind"'* ]]; then
                line=${line#*'"kind"'}
                line=${line#*'"'}
                kind=${line%%'"'*}
                break
            fi
        done < "$file"
        [[ $kind == worker ]] || continue
        name=${file##*/}
        _cc_dyn+=("${name%.json}")
    done
    [[ -n $restore ]] && shopt -s failglob
    return 0
}

# _carsctl_values CURRENT [PREFIX]: the candidates of the value spec in _cc_val.
_carsctl_values() {
    local cur=$1 pre=${2-} word
    local -a _cc_dyn=()
    case ${_cc_val[0]} in
        f) compopt -o filenames -o default 2>/dev/null; return 0 ;;
        d) compopt -o dirnames 2>/dev/null; return 0 ;;
        t) _carsctl_home; _carsctl_tasks ;;
        n) _carsctl_home; _carsctl_nodes ;;
        -) return 0 ;;
    esac
    for word in "${_cc_val[@]:1}" "${_cc_dyn[@]}"; do
        [[ $word == "$cur"* && " ${COMPREPLY[*]} " != *" $pre$word "* ]] && COMPREPLY+=("$pre$word")
    done
    return 0
}

_carsctl_words() {
    local cur=$1 word
    shift
    for word; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
    return 0
}

_carsctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmdpath= word i=1 n=0 skip=0 ddash=0
    local -a _cc_subs=() _cc_opts=() _cc_val=()
    local _cc_nargs=0 _cc_home=
    COMPREPLY=()
    _carsctl_cmd ''
    while (( i < COMP_CWORD )); do
        word=${COMP_WORDS[i]}
        (( i++ ))
        # `--opt=value` reaches us as `--opt`, `=`, `value` (= is in COMP_WORDBREAKS).
        [[ $word == = ]] && continue
        if (( skip > 0 )); then
            (( skip-- ))
            continue
        fi
        if (( ddash )); then
            (( n++ ))
            continue
        fi
        case $word in
            --) ddash=1 ;;
            -*=*) ;;
            -?*) _carsctl_optval "$cmdpath" "$word" && skip=$_cc_nargs ;;
            *)
                if [[ " ${_cc_subs[*]} " == *" $word "* ]]; then
                    cmdpath=${cmdpath:+$cmdpath }$word
                    _carsctl_cmd "$cmdpath"
                    n=0
                else
                    (( n++ ))
                fi
                ;;
        esac
    done
    [[ $cur == = ]] && cur=
    if (( skip > 0 )); then
        _carsctl_values "$cur"
    elif [[ $cur == -* ]] && (( ! ddash )); then
        if [[ $cur == --*=* ]] && _carsctl_optval "$cmdpath" "${cur%%=*}"; then
            _carsctl_values "${cur#*=}" "${cur%%=*}="
        else
            _carsctl_words "$cur" "${_cc_opts[@]}"
        fi
    elif (( ${#_cc_subs[@]} )); then
        _carsctl_words "$cur" "${_cc_subs[@]}"
    elif _carsctl_argval "$cmdpath" $(( n + 1 )); then
        _carsctl_values "$cur"
    elif (( ! ddash )); then
        _carsctl_words "$cur" "${_cc_opts[@]}"
    fi
    return 0
}

complete -F _carsctl carsctl
"""


def _case_label(*alternatives: str, glob_suffix: str = "") -> str:
    return "|".join(sh_quote(alt) + glob_suffix for alt in alternatives)


def _arg_cases(specs: Sequence[CommandSpec], emit: Any) -> list[str]:
    """The positional-argument cases of every command (shared by the three scripts)."""
    lines: list[str] = []
    for spec in specs:
        if spec.is_group or not spec.arguments:
            continue
        last = len(spec.arguments)
        for position, values in enumerate(spec.arguments, start=1):
            if position == last and spec.variadic:
                lines.append(emit(spec.path, f"{position}", values, rest=True))
            else:
                lines.append(emit(spec.path, f"{position}", values, rest=False))
    return lines


def bash_script(specs: Sequence[CommandSpec]) -> str:
    """The bash script (bash 4+, with or without the bash-completion package)."""
    cmd_cases: list[str] = []
    for spec in specs:
        parts = []
        if spec.subcommands:
            parts.append("_cc_subs=(" + " ".join(sh_quote(name) for name, _ in spec.subcommands) + ")")
        if spec.options:
            parts.append("_cc_opts=(" + " ".join(sh_quote(n) for o in spec.options for n in o.names) + ")")
        cmd_cases.append(f"        {sh_quote(spec.path)}) {' '.join(parts) or ':'} ;;")
    opt_cases = []
    for spec in specs:
        for option in spec.value_options:
            label = "|".join(sh_quote(f"{spec.path}|{name}") for name in option.names)
            opt_cases.append(f"        {label}) _cc_val=({_value_words(option.values, sh_quote)}); "
                             f"_cc_nargs={option.nargs} ;;")

    def emit(path: str, position: str, values: Values, rest: bool) -> str:
        label = sh_quote(f"{path}|") + "*" if rest else sh_quote(f"{path}|{position}")
        return f"        {label}) _cc_val=({_value_words(values, sh_quote)}) ;;"

    arg_cases = _arg_cases(specs, emit)
    body = (_BASH_BODY.replace("@CMD_CASES@", "\n".join(cmd_cases))
            .replace("@OPT_CASES@", "\n".join(opt_cases))
            .replace("@ARG_CASES@", "\n".join(arg_cases)))
    return _HEADER.format(comment="#", shell="bash") + body


# --- zsh -------------------------------------------------------------------------------------------

_ZSH_BODY = r"""
# _carsctl_cmd PATH: the subcommands and options (name:description) of a command path.
_carsctl_cmd() {
    _cc_subs=() _cc_opts=()
    case $1 in
@CMD_CASES@
    esac
}

# _carsctl_optval PATH OPTION: status 0 and the value spec in _cc_val (kind, words...) and the number
# of values in _cc_nargs when the option takes a value; status 1 for a flag or an unknown option.
_carsctl_optval() {
    case "$1|$2" in
@OPT_CASES@
        *) return 1 ;;
    esac
}

# _carsctl_argval PATH N: status 0 and the value spec in _cc_val when the command takes an N-th
# positional argument.
_carsctl_argval() {
    case "$1|$2" in
@ARG_CASES@
        *) return 1 ;;
    esac
}

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
_carsctl_home() {
    setopt localoptions extendedglob
    _cc_home=${CARSCTL_HOME-}
    if [[ -z $_cc_home && -f .env && -r .env ]]; then
        local line
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line##[[:space:]]#}
            line=${line#export }
            if [[ $line == CARSCTL_HOME[[:space:]]#=* ]]; then
                line=${${line#*=}##[[:space:]]#}
                line=${line%%[[:space:]]#}
                case $line in
                    \"*\"|\'*\') line=${line[2,-2]} ;;
                    *) line=${line%%[[:space:]]\#*} ;;
                esac
                _cc_home=$line
            fi
        done < .env
    fi
    _cc_home=${_cc_home:-.carsctl}
    [[ $_cc_home == "~/"* ]] && _cc_home=$HOME/${_cc_home#"~/"}
}

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
_carsctl_tasks() {
    local file=$_cc_home/completion/tasks line
    if [[ ! -f $file && ${_carsctl_refreshed-} != $_cc_home ]]; then
        typeset -g _carsctl_refreshed=$_cc_home
        if (( $+commands[carsctl] )); then
            CARSCTL_HOME=$_cc_home command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        fi
    fi
    [[ -f $file && -r $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -n $line ]] && _cc_dyn+=("$line")
    done < $file
}

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
_carsctl_nodes() {
    local file line kind
    for file in $_cc_home/nodes/*.json(N); do
        [[ -f $file && -r $file ]] || continue
        kind=worker
        while IFS= read -r line; do
            if [[ $line == *'"kind"'* ]]; then
                line=${line#*'"kind"'}
                line=${line#*'"'}
                kind=${line%%'"'*}
                break
            fi
        done < $file
        [[ $kind == worker ]] && _cc_dyn+=("${${file:t}%.json}")
    done
    return 0
}

# _carsctl_values: add the candidates of the value spec in _cc_val.
_carsctl_values() {
    local -a _cc_dyn cands
    case $_cc_val[1] in
        f) _files; return ;;
        d) _files -/; return ;;
        t) _carsctl_home; _carsctl_tasks ;;
        n) _carsctl_home; _carsctl_nodes ;;
        -) _message -e values 'value'; return ;;
    esac
    cands=(${_cc_val[2,-1]} $_cc_dyn)
    compadd -a cands
}

_carsctl() {
    # no `emulate -L zsh`: _describe and _files need the options _main_complete sets (extendedglob...)
    local cur=${(Q)words[CURRENT]} cmdpath= word
    integer i n=0 skip=0 ddash=0 _cc_nargs=0
    local -a _cc_subs _cc_opts _cc_val names
    local _cc_home
    _carsctl_cmd ''
    for (( i = 2; i < CURRENT; i++ )); do
        word=${(Q)words[i]}
        if (( skip > 0 )); then
            (( skip-- ))
            continue
        fi
        if (( ddash )); then
            (( n++ ))
            continue
        fi
        case $word in
            --) ddash=1 ;;
            -*=*) ;;
            -?*) _carsctl_optval "$cmdpath" "$word" && skip=$_cc_nargs ;;
            *)
                names=(${_cc_subs%%:*})
                if (( ${names[(Ie)$word]} )); then
                    cmdpath=${cmdpath:+$cmdpath }$word
                    _carsctl_cmd "$cmdpath"
                    n=0
                else
                    (( n++ ))
                fi
                ;;
        esac
    done
    if (( skip > 0 )); then
        _carsctl_values
    elif [[ $cur == -* ]] && (( ! ddash )); then
        if [[ $cur == --*=* ]] && _carsctl_optval "$cmdpath" "${cur%%=*}"; then
            compset -P '*='
            _carsctl_values
        else
            _describe -t options 'carsctl option' _cc_opts
        fi
    elif (( $#_cc_subs )); then
        _describe -t commands 'carsctl command' _cc_subs
    elif _carsctl_argval "$cmdpath" $(( n + 1 )); then
        _carsctl_values
    elif (( ! ddash )); then
        _describe -t options 'carsctl option' _cc_opts
    fi
}

if [[ ${zsh_eval_context[-1]-} == loadautofunc ]]; then
    # autoloaded from $fpath by compinit: complete now
    _carsctl "$@"
elif (( $+functions[compdef] )); then
    # sourced after compinit
    compdef _carsctl carsctl
else
    print -u2 "carsctl completion: run 'autoload -Uz compinit && compinit' before sourcing this file"
fi
"""


def zsh_script(specs: Sequence[CommandSpec]) -> str:
    """The zsh script: a `#compdef` function for `$fpath`, or a file to source after compinit."""
    cmd_cases: list[str] = []
    for spec in specs:
        parts = []
        if spec.subcommands:
            parts.append("_cc_subs=(" + " ".join(_zsh_item(n, h) for n, h in spec.subcommands) + ")")
        if spec.options:
            parts.append("_cc_opts=(" + " ".join(_zsh_item(n, o.help) for o in spec.options for n in o.names)
                         + ")")
        cmd_cases.append(f"        {sh_quote(spec.path)}) {' '.join(parts) or ':'} ;;")
    opt_cases = []
    for spec in specs:
        for option in spec.value_options:
            label = "|".join(sh_quote(f"{spec.path}|{name}") for name in option.names)
            opt_cases.append(f"        {label}) _cc_val=({_value_words(option.values, sh_quote)}); "
                             f"_cc_nargs={option.nargs} ;;")

    def emit(path: str, position: str, values: Values, rest: bool) -> str:
        label = sh_quote(f"{path}|") + "*" if rest else sh_quote(f"{path}|{position}")
        return f"        {label}) _cc_val=({_value_words(values, sh_quote)}) ;;"

    arg_cases = _arg_cases(specs, emit)
    body = (_ZSH_BODY.replace("@CMD_CASES@", "\n".join(cmd_cases))
            .replace("@OPT_CASES@", "\n".join(opt_cases))
            .replace("@ARG_CASES@", "\n".join(arg_cases)))
    return "#compdef carsctl\n" + _HEADER.format(comment="#", shell="zsh") + body


# --- fish ------------------------------------------------------------------------------------------

_FISH_BODY = r"""
# __carsctl_cmd PATH: the subcommands and options (name<TAB>description) of a command path.
function __carsctl_cmd
    set -g __carsctl_subs
    set -g __carsctl_opts
    switch $argv[1]
@CMD_CASES@
    end
end

# __carsctl_optval PATH OPTION: status 0 and the value spec in __carsctl_val (kind, words...) and the
# number of values in __carsctl_nargs when the option takes a value; status 1 otherwise.
function __carsctl_optval
    switch "$argv[1]|$argv[2]"
@OPT_CASES@
        case '*'
            return 1
    end
end

# __carsctl_argval PATH N: status 0 and the value spec in __carsctl_val when the command takes an
# N-th positional argument.
function __carsctl_argval
    switch "$argv[1]|$argv[2]"
@ARG_CASES@
        case '*'
            return 1
    end
end

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
function __carsctl_home
    set -l home
    if set -q CARSCTL_HOME[1]
        set home $CARSCTL_HOME[1]
    end
    if test -z "$home"; and test -f .env -a -r .env
        while read -l line
            set line (string replace -r '^\s*(export\s+)?' '' -- $line)
            if string match -qr '^CARSCTL_HOME\s*=' -- $line
                set line (string replace -r '^CARSCTL_HOME\s*=\s*' '' -- $line | string trim)
                if string match -qr '^(["\']).*\1$' -- $line
                    set home (string sub -s 2 -e -1 -- $line)
                else
                    set home (string replace -r '\s+#.*$' '' -- $line)
                end
            end
        end < .env
    end
    test -n "$home"; or set home .carsctl
    string replace -r '^~/' "$HOME/" -- $home
end

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
function __carsctl_tasks
    set -l file $argv[1]/completion/tasks
    if not test -f $file; and test "$__carsctl_refreshed" != $argv[1]
        set -g __carsctl_refreshed $argv[1]
        if command -q carsctl
            CARSCTL_HOME=$argv[1] command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        end
    end
    test -f $file -a -r $file; or return 0
    while read -l line
        test -n "$line"; and echo $line
    end < $file
end

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
function __carsctl_nodes
    for file in $argv[1]/nodes/*.json
        test -f $file -a -r $file; or continue
        set -l kind worker
        while read -l line
            if string match -q -- '*"kind"*' $line
                set kind (string replace -r '^.*"kind"\s*:\s*"([^"]*)".*$' '$1' -- $line)
                break
            end
        end < $file
        test "$kind" = worker; and string replace -r '^.*/(.*)\.json$' '$1' -- $file
    end
end

# __carsctl_values CURRENT [PREFIX]: print the candidates of the value spec in __carsctl_val.
function __carsctl_values
    set -l cands $__carsctl_val[2..-1]
    set -l pre ''
    set -q argv[2]; and set pre $argv[2]
    switch $__carsctl_val[1]
        case f
            for word in (__fish_complete_path $argv[1])
                echo $pre$word
            end
            return
        case d
            for word in (__fish_complete_directories $argv[1] '')
                echo $pre$word
            end
            return
        case t
            set -a cands (__carsctl_tasks (__carsctl_home))
        case n
            set -a cands (__carsctl_nodes (__carsctl_home))
        case -
            return
    end
    for word in $cands
        echo $pre$word
    end
end

function __carsctl_complete --description 'Completion candidates for carsctl'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath ''
    set -l n 0
    set -l skip 0
    set -l ddash 0
    set -g __carsctl_val
    set -g __carsctl_nargs 0
    __carsctl_cmd ''
    for word in $tokens[2..-1]
        if test $skip -gt 0
            set skip (math $skip - 1)
            continue
        end
        if test $ddash = 1
            set n (math $n + 1)
            continue
        end
        switch $word
            case --
                set ddash 1
            case -
                set n (math $n + 1)
            case '-*=*'
            case '-*'
                if __carsctl_optval $cmdpath $word
                    set skip $__carsctl_nargs
                end
            case '*'
                if contains -- $word (string replace -r '\t.*$' '' -- $__carsctl_subs)
                    if test -n "$cmdpath"
                        set cmdpath "$cmdpath $word"
                    else
                        set cmdpath $word
                    end
                    __carsctl_cmd $cmdpath
                    set n 0
                else
                    set n (math $n + 1)
                end
        end
    end
    if test $skip -gt 0
        __carsctl_values $cur
    else if string match -q -- '-*' $cur; and test $ddash = 0
        if string match -q -- '--*=*' $cur; and __carsctl_optval $cmdpath (string replace -r '=.*$' '' -- $cur)
            __carsctl_values (string replace -r '^[^=]*=' '' -- $cur) (string replace -r '=.*$' '=' -- $cur)
        else
            printf '%s\n' $__carsctl_opts
        end
    else if set -q __carsctl_subs[1]
        printf '%s\n' $__carsctl_subs
    else if __carsctl_argval $cmdpath (math $n + 1)
        __carsctl_values $cur
    else if test $ddash = 0
        printf '%s\n' $__carsctl_opts
    end
end

complete -c carsctl -e
complete -c carsctl -f -a '(__carsctl_complete)'
"""


def fish_script(specs: Sequence[CommandSpec]) -> str:
    """The fish script (fish 3.1+), for `~/.config/fish/completions/carsctl.fish`."""
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

    def emit(path: str, position: str, values: Values, rest: bool) -> str:
        label = fish_quote(f"{path}|*" if rest else f"{path}|{position}")  # quoted * still globs in a case
        return f"        case {label}\n            set -g __carsctl_val {_value_words(values, fish_quote)}"

    arg_cases = _arg_cases(specs, emit)
    body = (_FISH_BODY.replace("@CMD_CASES@", "\n".join(cmd_cases))
            .replace("@OPT_CASES@", "\n".join(opt_cases))
            .replace("@ARG_CASES@", "\n".join(arg_cases)))
    return _HEADER.format(comment="#", shell="fish") + body


# --- the three scripts -----------------------------------------------------------------------------

_GENERATORS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


def generate(shell: str, app: Any | None = None, specs: Sequence[CommandSpec] | None = None) -> str:
    """One shell's script for `app` (default: the carsctl app)."""
    if shell not in _GENERATORS:
        raise ValueError(f"unsupported shell {shell!r}: use one of {', '.join(SHELLS)}")
    return _GENERATORS[shell](command_specs(app) if specs is None else specs)


def generate_all(app: Any | None = None) -> dict[str, str]:
    """File name in `completions/` -> content, for the three shells."""
    specs = command_specs(app)
    return {SCRIPT_NAMES[shell]: generate(shell, specs=specs) for shell in SHELLS}


def project_completions_dir() -> Path | None:
    """The source tree's `completions/` directory (None when carsctl is not run from a checkout)."""
    root = Path(__file__).resolve().parents[2]
    return root / "completions" if (root / "pyproject.toml").is_file() else None


def write_all(directory: Path, app: Any | None = None) -> list[Path]:
    """Write the three scripts into `directory`; returns the files whose content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, content in generate_all(app).items():
        path = directory / name
        if not path.is_file() or path.read_text() != content:
            path.write_text(content)
            changed.append(path)
    return changed


def stale_files(directory: Path, app: Any | None = None) -> list[str]:
    """The names of the scripts in `directory` that are missing or differ from a fresh generation."""
    stale = []
    for name, content in generate_all(app).items():
        path = directory / name
        if not path.is_file() or path.read_text() != content:
            stale.append(name)
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


def install_script(shell: str, directory: Path | None = None,
                   environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Write a shell's script into its completion directory (or `directory`).

    Returns the path written, the rc file and the lines it still needs (none when the shell will find
    the script by itself), and a one-line note for the user.
    """
    import os

    env = dict(os.environ) if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    standard = default_install_dir(shell, env)
    target_dir = (directory or standard).expanduser()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / INSTALLED_NAMES[shell]
    path.write_text(generate(shell))
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
    return {"shell": shell, "path": str(path), "rc_file": _display(rc_file, home), "rc_lines": rc_lines,
            "note": note}
