"""The one context object of a carsctl invocation (on `ctx.obj`): flags, settings, consoles, app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carsctl.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from celery import Celery
    from rich.console import Console

    from cars_bot.config import Settings


@dataclass
class CliContext:
    """Global flags, plus settings, consoles and the Celery app created on first use."""

    json: bool = False
    debug: bool = False
    verbosity: int = 0
    no_color: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    _app: Celery | None = field(default=None, repr=False)
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from cars_bot.config import ConfigError, get_settings

            try:
                self._settings = get_settings()
            except ConfigError as error:
                raise UsageError(str(error), hint="fix the variable in the environment or .env") from None
            self._warn_if_dotenv_is_open(self._settings)
        return self._settings

    def _warn_if_dotenv_is_open(self, settings: Settings) -> None:
        """One line on stderr when the `.env` just read (the secrets) is readable by other users."""
        from cars_bot.private_files import readable_by_others

        dotenv = settings.cwd / ".env"
        if ".env" in settings.sources.values() and readable_by_others(dotenv):
            self.err.print(f"carsctl: warning: {dotenv} is readable by other users; run `chmod 600 {dotenv}`",
                           markup=False, soft_wrap=True)

    @property
    def celery_app(self) -> Celery:
        """The cars_bot Celery app (imports Celery: only commands that need it call this)."""
        if self._app is None:
            self.settings  # noqa: B018 - surface a config error as one line before Celery imports it
            from cars_bot.celery_app import app

            self._app = app
            from carsctl.generated.completion_cache import remember_app

            remember_app(self.settings, app)
        return self._app

    def _console(self, stderr: bool) -> Console:
        from rich.console import Console

        no_color = self.no_color or "NO_COLOR" in os.environ
        return Console(stderr=stderr, no_color=no_color, highlight=False,
                       soft_wrap=False, emoji=False)

    @property
    def out(self) -> Console:
        """stdout: data only."""
        if self._out is None:
            self._out = self._console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        """stderr: progress, warnings, 'done' lines."""
        if self._err is None:
            self._err = self._console(stderr=True)
        return self._err

    def info(self, message: str) -> None:
        """A status line on stderr (suppressed by -q)."""
        if self.verbosity >= 0:
            self.err.print(message, soft_wrap=True)

    def confirm_or_refuse(self, question: str, action: str) -> None:
        """Ask on the terminal; without one, refuse (exit 2): a destructive command never runs unasked."""
        import sys

        import typer

        if not sys.stdin.isatty():
            raise UsageError(f"refusing to {action} without --yes when stdin is not a terminal")
        if not typer.confirm(question, err=True):
            raise OperationFailed(f"{action} cancelled, nothing done")

    def emit_json(self, data: Any) -> None:
        from carsctl.render import dump_json

        print(dump_json(data))


def obj(ctx: Any) -> CliContext:
    """The CliContext of a Typer context (a fresh default one when a command runs standalone)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):
        root.obj = CliContext()
    return root.obj
