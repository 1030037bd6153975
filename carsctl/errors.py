"""Typed errors, each mapped to one line and one exit code at one boundary (carsctl.app)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE, as Celery's own CLI uses when no worker replies


class CarsctlError(Exception):
    """An error with a message for the operator and an exit code; `hint` says what to do."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class OperationFailed(CarsctlError):
    """The operation was attempted and did not succeed (exit 1)."""


class UsageError(CarsctlError):
    """Bad arguments or configuration (exit 2)."""

    exit_code = EXIT_USAGE


class DependencyUnavailable(CarsctlError):
    """The broker, the database, a worker or an external service cannot be reached (exit 69)."""

    exit_code = EXIT_UNAVAILABLE


def typed_error(error: BaseException) -> CarsctlError | None:
    """A known failure of the layers below as the typed error the boundary reports; None if unexpected.

    An OverflowError is a number too large for where it goes (exit 2). A file-system error names the
    path and the reason (exit 1). Database errors become one line
    (SQLAlchemy's message carries the SQL and a link on further lines): unreachable, locked or a schema
    behind is 69, anything else the database refused is 1.
    """
    from cars_bot.db.migrate import DatabaseBehind, UnknownRevision
    from cars_bot.post_input import PostInputError

    if isinstance(error, PostInputError):  # a post that does not fit the schema (`demo --file`)
        return UsageError(str(error))
    if isinstance(error, DatabaseBehind):
        return DependencyUnavailable(str(error), hint="run `carsctl db upgrade`")
    if isinstance(error, UnknownRevision):
        return UsageError(str(error), hint="`carsctl db status` shows the newest")
    if isinstance(error, OverflowError):  # a number given on the command line that nothing can hold
        return UsageError(f"a number is out of range: {error}")
    if isinstance(error, OSError) and error.filename is not None:  # e.g. an unwritable --output-dir
        target = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        return OperationFailed(f"cannot use {target}: {error.strerror or type(error).__name__}")
    if type(error).__module__.startswith("sqlalchemy."):
        from sqlalchemy.exc import InterfaceError, OperationalError

        cause = getattr(error, "orig", None) or error
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        if isinstance(error, (OperationalError, InterfaceError)):
            return DependencyUnavailable(f"database error: {text}")
        return OperationFailed(f"database error: {type(cause).__name__}: {text}")
    return None
