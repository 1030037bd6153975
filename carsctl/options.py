"""Options shared by several commands, defined once."""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Literal

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds to wait at most.")]
QueuesOpt = Annotated[list[str] | None, typer.Option("--queue", "-Q", metavar="QUEUE",
                                                     help="A queue (repeat for several; default: all).")]
QueueOpt = Annotated[str | None, typer.Option("--queue", "-Q", metavar="QUEUE",
                                              help="Send to this queue instead of the task's own.")]
DestinationOpt = Annotated[list[str] | None, typer.Option("--destination", "-d", metavar="NODE",
                                                          help="Only this worker node (repeat for several).")]
ReplyTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.0, help="Seconds to wait for a silent worker; the others' replies return at once.")]

# worker, beat, flower and the stack
PoolOpt = Annotated[Literal["prefork", "solo", "threads"] | None, typer.Option(
    "--pool", "-P", help="Execution pool. [default: prefork, or what the node last ran with]", show_default=False)]
LoglevelOpt = Annotated[Literal["debug", "info", "warning", "error", "critical"] | None, typer.Option(
    "--loglevel", "-l", help="Log level. [default: info, or what the node last ran with]", show_default=False)]
StartTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to wait until a node answers a ping; after that it is stopped.")]
StopTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.0, help="Seconds of warm shutdown (running tasks finish) before a cold shutdown.")]
ColdTimeoutOpt = Annotated[float, typer.Option(
    "--cold-timeout", min=0.0, help="Seconds after the cold shutdown (SIGQUIT) before giving up, or SIGKILL "
                                   "with --force.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="SIGKILL what survives the cold shutdown.")]
NodeOpt = Annotated[list[str] | None, typer.Option(
    "--node", "-n", show_default=False,
    help="A worker node as NAME[:QUEUES[:CONCURRENCY]] (repeat for several), e.g. ai:ai_processing:2. "
         "[default: the nodes of the last run, else one node 'worker' on all five queues]")]


def conventional_metavars(command: Any) -> None:
    """Give every parameter of `command` (and its subcommands) a conventional metavar, as click and most
    Unix tools write them: `-c INTEGER`, `--timeout SECONDS`, `--pool [prefork|solo|threads]`, `FILE`,
    `[NODE]...`, instead of Typer's type names (`<int range>`, `<list[str]>`, `{file}`, `NODE......`).

    Called once per command tree when it is built (`carsctl.app.load_command`); a metavar a parameter
    declares is kept, with any trailing "..." dropped (the usage line adds it for repeated arguments).
    """
    from typer.core import TyperArgument

    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument":
            name = (param.metavar or param.name or "").upper().removesuffix("...")
            param.metavar = name
            if isinstance(param, TyperArgument):
                param.__class__ = _conventional_argument_class()
        elif param.param_type_name == "option" and param.metavar is None and not (param.is_flag or param.count):
            param.metavar = _option_metavar(param)
    for sub in getattr(command, "commands", {}).values():
        conventional_metavars(sub)


def _option_metavar(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return param.type.name.upper()
    if descriptor.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in descriptor.choices or ()) + "]"
    if descriptor.is_path or descriptor.is_file:
        return {"directory": "DIR", "file": "FILE"}.get(descriptor.path_type, "PATH")
    annotation = descriptor.annotation
    element = typing.get_args(annotation)[0] if descriptor.is_list and typing.get_args(annotation) else annotation
    if element is int:
        return "INTEGER"
    if element is float:
        return "SECONDS" if "second" in (param.help or "").lower() else "NUMBER"
    if descriptor.is_datetime:
        return "DATETIME"
    return "TEXT"


@functools.cache
def _conventional_argument_class() -> type:
    from typer.core import TyperArgument

    class ConventionalArgument(TyperArgument):
        """A Typer argument shown as click shows one: `FILE`, `[ID]`, `[NODE]...`; its help row names
        it once, without a type."""

        def display_type_rich(self, ctx: Any) -> str | None:
            return None

        def _usage_display_name(self) -> str:
            name = self.metavar if self.required else f"[{self.metavar}]"
            return f"{name}..." if self.nargs != 1 else name

    return ConventionalArgument
