"""The README's command reference, generated from the Typer command tree (never edited by hand).

    python -m carsctl.generated.command_reference README.md     # rewrite the block between the markers
    python -m carsctl.generated.command_reference --check README.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

START = "<!-- commands:start -->"
END = "<!-- commands:end -->"


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    if not hasattr(command, "list_commands"):
        return [(path, command)]
    import typer

    ctx = typer.Context(command)
    found = []
    for name in sorted(command.list_commands(ctx)):
        sub = command.get_command(ctx, name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        found += _walk(sub, [*path, name])
    return found


def _usage(path: list[str], command: Any) -> str:
    pieces = [" ".join(path)]
    for param in command.params:
        if param.param_type_name == "argument":
            name = (param.metavar or param.name or "").upper()
            name = f"{name}..." if param.nargs == -1 else name
            pieces.append(name if param.required or name.startswith("[") else f"[{name}]")
    if any(p.param_type_name == "option" for p in command.params):
        pieces.append("[OPTIONS]")
    return " ".join(pieces)


def _help_lines(command: Any) -> tuple[str, str | None]:
    text = (command.help or "").strip()
    summary = text.splitlines()[0] if text else ""
    example = next((line.strip().removeprefix("Example:").strip() for line in text.splitlines()
                    if line.strip().startswith("Example:")), None)
    return summary, example


def command_reference() -> str:
    """Markdown: one entry per command with its usage, summary and example."""
    import typer

    from carsctl.app import app

    root = typer.main.get_command(app)
    lines = [START, "## Command reference", "",
             "Generated from the command tree (`python -m carsctl.generated.command_reference README.md`); "
             "every command has `--help`, and read commands take `--json`.", ""]
    for path, command in _walk(root, ["carsctl"]):
        summary, example = _help_lines(command)
        lines.append(f"- `{_usage(path, command)}`: {summary}")
        if example:
            lines.append(f"  Example: `{example}`")
    lines.append(END)
    return "\n".join(lines)


def updated_readme(text: str) -> str:
    """`text` with the block between the markers replaced by the current reference."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + command_reference() + tail


def main(argv: list[str]) -> int:
    check = "--check" in argv
    path = Path(next((a for a in argv if not a.startswith("--")), "README.md"))
    current = path.read_text(encoding="utf-8")
    fresh = updated_readme(current)
    if check:
        if fresh != current:
            print(f"{path}: the command reference is stale; "
                  f"run python -m carsctl.generated.command_reference {path}", file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
