"""Docs are checked: the README's command reference matches the app, every command has an example."""

from pathlib import Path

import typer

from carsctl.app import app
from carsctl.generated.command_reference import _help_lines, _walk, updated_readme

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_command_reference_is_current() -> None:
    current = README.read_text(encoding="utf-8")
    assert updated_readme(current) == current, "run: python -m carsctl.generated.command_reference README.md"


def test_every_command_has_help_with_an_example() -> None:
    missing = []
    for path, command in _walk(typer.main.get_command(app), ["carsctl"]):
        summary, example = _help_lines(command)
        if not summary or not example:
            missing.append(" ".join(path))
    assert not missing, f"commands without a summary and an 'Example:' line: {missing}"


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert commands == ["pip install -e . && carsctl up && carsctl demo",
                        "pip install -e '.[test]' && python -m pytest"]
