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
