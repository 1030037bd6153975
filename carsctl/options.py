"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Literal

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
