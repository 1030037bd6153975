"""Helpers for in-process CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from typer.testing import CliRunner

from carsctl.app import app


def run_in_process(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    """Run carsctl in-process with fresh settings; the result of Typer's CliRunner."""
    from cars_bot.config import reset_settings

    reset_settings()
    result = CliRunner().invoke(app, list(args), input=input, env=env, catch_exceptions=False)
    reset_settings()
    return result


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    """Run carsctl in-process; asserts that no traceback was printed."""
    result = run_in_process(*args, input=input, env=env)
    assert "Traceback" not in result.output, result.output
    return result


def run_carsctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run carsctl as a real subprocess (`python -m carsctl`)."""
    return subprocess.run([sys.executable, "-m", "carsctl", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
