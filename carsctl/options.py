"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

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
