"""The root Typer app: global options, the error boundary, and one `add_typer` per command group.

Importing this module imports Typer and the command modules only; Celery, SQLAlchemy, Rich tables and
the API clients are imported inside the commands that use them, so `carsctl --help` and shell
completion stay fast.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from carsctl import __version__
from carsctl.context import CliContext
from carsctl.errors import EXIT_FAILED, EXIT_USAGE, CarsctlError


class CarsctlGroup(TyperGroup):
    """The root group: commands loaded on demand (`COMMANDS`), and the error boundary: typed errors
    become one line on stderr and their exit code.

    No traceback is printed unless `--debug` is given, and never the locals of a frame (they would
    hold tokens and API keys).
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from carsctl.param_coercion import install

        install(self)  # the global options, converted without pydantic
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # Typer suggests from `self.commands`, empty here (commands load on demand): suggest from COMMANDS.
        from typer._click.exceptions import UsageError

        try:
            return super().resolve_command(ctx, args)
        except UsageError as error:
            from difflib import get_close_matches

            matches = get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches and "Did you mean" not in error.message:
                error.message = f"{error.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list of `carsctl --help`, as Typer writes it, from SUMMARIES (a command missing
        there is built to read its help)."""
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(SUMMARIES[name], limit).strip() if name in SUMMARIES
                 else load_command(name).get_short_help_str(limit)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
            from carsctl.errors import typed_error

            if isinstance(error, ConfigError):
                _report(ctx, f"configuration error: {error}", error)
                raise Exit(EXIT_USAGE) from None
            typed = typed_error(error)
            if typed is not None:
                _report(ctx, str(typed), error)
                raise Exit(typed.exit_code) from None
            first_line = (str(error).strip().splitlines() or [""])[0]
            _report(ctx, f"internal error: {type(error).__name__}: {first_line} (run with --debug for the traceback)",
                    error)
            raise Exit(EXIT_FAILED) from None


def _report(ctx: Any, message: str, error: BaseException | None = None) -> None:
    from cars_bot.secret_masking import mask_secrets_in

    obj = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    settings = obj._settings
    if settings is None:  # the error came before any command read the settings: mask their secrets anyway
        from cars_bot.config import ConfigError, get_settings

        try:
            settings = get_settings()
        except ConfigError:
            settings = None
    if obj.debug and error is not None:
        import traceback

        print(mask_secrets_in("".join(traceback.format_exception(error)), settings), end="", file=sys.stderr)
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


# Every command, in the order `carsctl --help` lists them: name -> (module, attribute), where the
# attribute is a group's Typer `app` or a single command's function. This is the only place that
# composes the commands; a module is imported (and its parameters converted by Typer) only when its
# command runs, which keeps every invocation ~40 ms faster than building the whole tree.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("carsctl.commands.demo", "demo"),
    "up": ("carsctl.commands.stack", "up"),
    "down": ("carsctl.commands.stack", "down"),
    "status": ("carsctl.commands.status", "status"),
    "worker": ("carsctl.commands.worker", "app"),
    "beat": ("carsctl.commands.beat", "app"),
    "monitor": ("carsctl.commands.monitor", "app"),
    "broker": ("carsctl.commands.broker", "app"),
    "inspect": ("carsctl.commands.inspect", "app"),
    "control": ("carsctl.commands.control", "app"),
    "events": ("carsctl.commands.events", "events"),
    "queues": ("carsctl.commands.queues", "queues"),
    "purge": ("carsctl.commands.queues", "purge"),
    "task": ("carsctl.commands.task", "app"),
    "schedule": ("carsctl.commands.schedule", "schedule"),
    "logs": ("carsctl.commands.logs", "logs"),
    "post": ("carsctl.commands.post", "app"),
    "doctor": ("carsctl.commands.doctor", "doctor"),
    "flower": ("carsctl.commands.flower", "flower"),
    "systemd": ("carsctl.commands.systemd", "systemd"),
    "config": ("carsctl.commands.config", "app"),
    "db": ("carsctl.commands.db", "app"),
    "sheets": ("carsctl.commands.sheets", "app"),
    "completion": ("carsctl.commands.completion", "app"),
}

#: The first paragraph of each command"s help, for the command list of `carsctl --help` (building every
#: command to read it would cost ~100 ms); tests/carsctl/test_app_help.py checks it against the commands.
SUMMARIES: dict[str, str] = {
    "demo": "Push sample car ads through the running stack: classify -> extract -> generate -> publish.",
    "up": "Bring the stack up: embedded broker (no REDIS_URL), migrations, worker nodes, beat, the monitor.",
    "down": "Bring the stack down in reverse order: Flower, the monitor, beat, worker nodes (gracefully), broker.",
    "status": "One screen: broker, database, worker nodes, beat, queue depths, failed tasks, monitor service.",
    "worker": "Worker nodes: start, stop, restart, status.",
    "beat": "Beat, the periodic-task scheduler: start, stop, restart, status.",
    "monitor": "The Telegram monitor service: start, stop, restart, status.",
    "broker": "The broker: the embedded Redis, or the one REDIS_URL names.",
    "inspect": "Ask the running workers: active, reserved, scheduled, stats, registered, revoked, queues, ping.",
    "control": ("Change the running workers: rate-limit, "
        "time-limit, pool, autoscale, add-consumer, cancel-consumer, shutdown."),
    "events": ("Watch the workers live: per task and per node, events and runtimes over the last minute, queue\n"
        "depths, the last failures. Ctrl-C leaves. With --json, one JSON object per task or worker event\n"
        "(heartbeats left out) on stdout, as it arrives."),
    "queues": "Messages per queue: ready (every priority level counted), unacked (held by workers), scheduled (ETA).",
    "purge": "Delete the waiting messages of all (or -Q) queues, every priority level; asks first.",
    "task": "Run tasks by hand, look at their results, revoke them, retry failed ones.",
    "schedule": "The beat schedule as live data: task, schedule, queue, last run and next run.",
    "logs": "Show a log, like `tail -f logs/celery_worker.log`, with filters; Ctrl-C stops it cleanly.",
    "post": "Add, import and inspect posts.",
    "doctor": "Check broker, database, visibility timeout, result expiry, acks, beats, reply keys, clocks, logs.",
    "flower": "Start Flower detached (log: logs/flower.log), or stop it with --stop.",
    "systemd": "Print unit files: one per worker node, beat, the embedded broker (no REDIS_URL) and cars-bot.target.",
    "config": "Show the effective configuration.",
    "db": "Database migrations.",
    "sheets": "The admin spreadsheet: create its worksheets, show their syncs, sync now.",
    "completion": "Shell completion for bash, zsh and fish: generate, show, install, refresh.",
}


@functools.cache
def load_command(name: str) -> Any:
    """The click command of a top-level command, built from its module on first use."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        target.rich_markup_mode = app.rich_markup_mode  # the same plain help everywhere
        command = typer.main.get_group(target)  # a group even when it has a single subcommand
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=app.rich_markup_mode)
        single.command(name=name)(target)
        command = typer.main.get_command(single)
    command.name = name
    from carsctl.options import conventional_metavars
    from carsctl.param_coercion import install

    conventional_metavars(command)
    install(command)
    return command


def main() -> None:
    """Console-script entry point."""
    app(prog_name="carsctl")
