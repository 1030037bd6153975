"""The root Typer app: global options, the error boundary, and one `add_typer` per command group.

Importing this module imports Typer and the command modules only; Celery, SQLAlchemy, Rich tables and
the API clients are imported inside the commands that use them, so `carsctl --help` and shell
completion stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from carsctl import __version__
from carsctl.context import CliContext
from carsctl.errors import EXIT_FAILED, EXIT_USAGE, CarsctlError


class CarsctlGroup(TyperGroup):
    """The error boundary: typed errors become one line on stderr and their exit code.

    No traceback is printed unless `--debug` is given, and never the locals of a frame (they would
    hold tokens and API keys).
    """

    def invoke(self, ctx: Any) -> Any:
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort, Exit

        try:
            return super().invoke(ctx)
        except (Exit, Abort, ClickException):
            raise
        except KeyboardInterrupt:
            _report(ctx, "interrupted")
            raise Exit(130) from None
        except BrokenPipeError:
            # `carsctl queues --json | head`: the reader left; stop quietly, as Unix tools do.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(0) from None
        except CarsctlError as error:
            _report(ctx, str(error), error)
            raise Exit(error.exit_code) from None
        except Exception as error:  # noqa: BLE001 - the boundary: anything unexpected
            from cars_bot.config import ConfigError

            if isinstance(error, ConfigError):
                _report(ctx, f"configuration error: {error}", error)
                raise Exit(EXIT_USAGE) from None
            _report(ctx, f"internal error: {type(error).__name__}: {error} (run with --debug for the traceback)",
                    error)
            raise Exit(EXIT_FAILED) from None


def _report(ctx: Any, message: str, error: BaseException | None = None) -> None:
    from cars_bot.config import mask_secrets_in

    obj = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    if obj.debug and error is not None:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    settings = obj._settings
    print(f"carsctl: error: {mask_secrets_in(message, settings)}", file=sys.stderr)


app = typer.Typer(
    name="carsctl",
    cls=CarsctlGroup,
    help="Operate the cars_bot Celery task system: workers, beat, queues, tasks, logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"carsctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, show_default=False,
                                         help="More detail.")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (also: NO_COLOR).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """carsctl: operate the cars_bot Celery task system.

    Example: carsctl up && carsctl status
    """
    ctx.obj = CliContext(json=json, debug=debug, verbosity=-1 if quiet else verbose, no_color=no_color)


# The command groups, one module each (carsctl/commands/<group>.py, each with its own Typer `app`);
# single commands are registered by their function. This is the only place that composes them.
from carsctl.commands import (  # noqa: E402
    beat,
    broker,
    completion,
    config,
    db,
    demo,
    doctor,
    flower,
    inspect,
    logs,
    post,
    queues,
    schedule,
    stack,
    status,
    systemd,
    task,
    worker,
)

app.command(name="demo")(demo.demo)
app.command(name="up")(stack.up)
app.command(name="down")(stack.down)
app.command(name="status")(status.status)
app.add_typer(worker.app, name="worker")
app.add_typer(beat.app, name="beat")
app.add_typer(broker.app, name="broker")
app.add_typer(inspect.app, name="inspect")
app.command(name="queues")(queues.queues)
app.command(name="purge")(queues.purge)
app.add_typer(task.app, name="task")
app.command(name="schedule")(schedule.schedule)
app.command(name="logs")(logs.logs)
app.add_typer(post.app, name="post")
app.command(name="doctor")(doctor.doctor)
app.command(name="flower")(flower.flower)
app.command(name="systemd")(systemd.systemd)
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(completion.app, name="completion")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="carsctl")
