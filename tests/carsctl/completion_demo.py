"""A stand-in app for the completion tests: the shapes of the commands whose values complete dynamically.

The task aliases, node names, queues, log targets, pools and log levels are checked on it, so they are
tested whatever the real command tree holds today. A plain function, shared by test_completion.py and
test_completion_shells.py.
"""

from __future__ import annotations

from typing import Annotated

import typer


def demo_app() -> typer.Typer:
    """worker start/stop, task run, purge, logs and inspect, with plain-str parameters."""
    app = typer.Typer(name="carsctl", add_completion=False, no_args_is_help=True,
                      context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def root(json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Root."""

    worker = typer.Typer(help="Worker nodes.")

    @worker.command("start")
    def worker_start(
        name: Annotated[str, typer.Argument(help="Node name.")] = "worker",
        queues: Annotated[str | None, typer.Option("-Q", "--queues", help="Queues.")] = None,
        pool: Annotated[str, typer.Option("-P", "--pool", help="Pool.")] = "prefork",
        loglevel: Annotated[str, typer.Option("-l", "--loglevel", help="Log level.")] = "info",
        concurrency: Annotated[int | None, typer.Option("-c", "--concurrency", help="Processes.")] = None,
        detach: Annotated[bool, typer.Option("--detach/--foreground", help="Detach.")] = True,
    ) -> None:
        """Start a worker node."""

    @worker.command("stop")
    def worker_stop(
        names: Annotated[list[str] | None, typer.Argument(help="Nodes.")] = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 10.0,
        force: Annotated[bool, typer.Option("--force", help="KILL after the timeout.")] = False,
    ) -> None:
        """Stop worker nodes."""

    task = typer.Typer(help="Tasks.")

    @task.command("run")
    def task_run(
        name: Annotated[str, typer.Argument(help="Alias or full name.")],
        args: Annotated[list[str] | None, typer.Argument(help="Arguments.")] = None,
        queue: Annotated[str | None, typer.Option("-Q", "--queue", help="Queue.")] = None,
        wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    ) -> None:
        """Send a task."""

    inspect = typer.Typer(help="Ask the workers.")
    for sub in ("active", "reserved", "scheduled", "ping"):
        def command(
            destination: Annotated[list[str] | None, typer.Option("-d", "--destination", help="Node.")] = None,
            timeout: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 1.0,
        ) -> None:
            """Inspect."""

        inspect.command(sub)(command)

    @app.command("purge")
    def purge(
        queues: Annotated[list[str] | None, typer.Option("-Q", "--queues", help="Queues.")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="No confirmation.")] = False,
    ) -> None:
        """Purge queues."""

    @app.command("logs")
    def logs(
        target: Annotated[str | None, typer.Argument(help="worker, beat, monitor or a node.")] = None,
        lines: Annotated[int, typer.Option("-n", "--lines", help="Lines.")] = 50,
        follow: Annotated[bool, typer.Option("-f", "--follow", help="Follow.")] = False,
    ) -> None:
        """Show logs."""

    app.add_typer(worker, name="worker")
    app.add_typer(task, name="task")
    app.add_typer(inspect, name="inspect")
    return app
