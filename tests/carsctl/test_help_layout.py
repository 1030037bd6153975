"""Help reads as Unix tools' help does: conventional metavars everywhere, "did you mean" at every level."""

from __future__ import annotations

import re

import pytest

from carsctl.generated.command_reference import _walk, command_reference
from tests.carsctl.cli import run_carsctl, run_in_process

# Typer's own type names: `<int range>`, `<list[str]>`, `{file}`, and a metavar's dots doubled (`NODE......`).
LEAKED_TYPE = re.compile(r"<[a-z][a-z0-9_ .,|\[\]]*>|\{[a-z_]+\}|\.{4,}")


def _command_paths() -> list[list[str]]:
    import typer

    from carsctl.app import app

    return [path[1:] for path, _ in _walk(typer.main.get_command(app), ["carsctl"])]


def test_every_help_uses_conventional_metavars() -> None:
    paths = [[], *_command_paths()]
    assert len(paths) > 50  # the whole tree, not a stub
    leaks = {}
    for path in paths:
        result = run_in_process(*path, "--help", env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        found = LEAKED_TYPE.findall(result.stdout)
        if found:
            leaks[" ".join(path)] = found
    assert not leaks, leaks


def test_readme_command_reference_uses_conventional_metavars() -> None:
    reference = command_reference()
    assert not LEAKED_TYPE.findall(reference)
    assert "carsctl worker start [NODE...] [OPTIONS]" in reference


@pytest.mark.parametrize(("args", "usage", "option"), [
    (["worker", "start"], "Usage: carsctl worker start [OPTIONS] [NODE]...", "-c, --concurrency INTEGER"),
    (["post", "import"], "Usage: carsctl post import [OPTIONS] FILE", "--timeout SECONDS"),
    (["worker", "start"], "Usage: carsctl worker start [OPTIONS] [NODE]...", "-P, --pool [prefork|solo|threads]"),
])
def test_usage_and_option_metavars(args: list[str], usage: str, option: str) -> None:
    text = run_in_process(*args, "--help", env={"COLUMNS": "200"}).stdout
    assert usage in text and option in text


@pytest.mark.parametrize(("typed", "meant"), [("inpsect", "inspect"), ("wroker", "worker"), ("stauts", "status")])
def test_top_level_typo_suggests_the_command(typed: str, meant: str) -> None:
    result = run_carsctl(typed, "active")
    assert result.returncode == 2
    assert f"Did you mean '{meant}'?" in result.stderr or f"did you mean '{meant}'" in result.stderr.lower(), \
        result.stderr
    assert "Traceback" not in result.stderr
