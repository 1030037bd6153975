"""The model behind the completion scripts: the Typer command tree as specs, and how each value completes.

`command_specs()` walks the command tree (commands, subcommands, options, which options take a value,
positional arguments) into `CommandSpec`s; `carsctl.generated.completion_scripts` writes them into the
bash, zsh and fish scripts as shell data. Nothing here knows a shell's syntax.

Which parameter takes which kind of value is decided, in order, by the parameter's own choices (an
Enum or Literal type), then by the explicit table `value_sources()` below (keyed by command path and
parameter name, so it applies as soon as a command with that shape appears), then by a path type.
The walk is deterministic (option names are sorted), so the generated scripts are too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

PROG = "carsctl"
SHELLS: tuple[str, ...] = ("bash", "zsh", "fish")

_HELP_LIMIT = 70


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """An option of a command: its spellings, help, how many values it takes, how they complete."""

    names: tuple[str, ...]
    help: str
    nargs: int
    values: Values = FREE_TEXT


@dataclass(frozen=True, slots=True)
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
        """A group completes its subcommands; its positional arguments are never offered."""
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
