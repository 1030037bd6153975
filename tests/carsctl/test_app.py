"""The root app: fast help without heavy imports, the error boundary, exit codes."""

import json
import subprocess
import sys

import typer

from tests.carsctl.cli import invoke, run_carsctl, run_in_process

HEAVY = ("celery", "kombu", "sqlalchemy", "telethon", "gspread", "openai", "redis")


def test_help_does_not_import_heavy_packages() -> None:
    code = ("import sys; from carsctl.app import main; sys.argv=['carsctl','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_help_builds_no_command_module() -> None:
    """`carsctl --help` lists the commands from app.SUMMARIES: no command module is imported (each costs
    Typer's parameter conversion, ~100 ms for all of them)."""
    code = ("import sys; from carsctl.app import main; sys.argv=['carsctl','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED=' + ','.join(m for m in sys.modules if m.startswith('carsctl.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.rstrip().endswith("LOADED="), out


def test_help_summaries_are_the_commands_own_help() -> None:
    """SUMMARIES holds every command's first help paragraph, and the list reads as Typer would write it."""
    from typer.core import TyperGroup

    from carsctl.app import COMMANDS, SUMMARIES, app, load_command

    assert list(SUMMARIES) == list(COMMANDS)
    for name in COMMANDS:
        assert SUMMARIES[name] == (load_command(name).help or "").split("\n\n")[0], name
    group = typer.main.get_group(app)
    for width in (60, 80, 120):
        ctx = group.make_context("carsctl", ["config"], max_content_width=width, terminal_width=width)
        ours, typers = ctx.make_formatter(), ctx.make_formatter()
        group.format_commands(ctx, ours)
        TyperGroup.format_commands(group, ctx, typers)
        assert ours.getvalue() == typers.getvalue()


def test_version_and_help() -> None:
    assert invoke("--version").stdout.startswith("carsctl ")
    result = invoke("--help")
    assert result.exit_code == 0 and "config" in result.stdout and "broker" in result.stdout


def test_unknown_command_is_usage_error() -> None:
    result = run_carsctl("no-such-command")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_internal_errors_are_one_line_without_debug_and_masked(monkeypatch, settings) -> None:
    """The error boundary masks configured secrets and URL passwords in what it prints (and --debug too)."""
    import carsctl.commands.config as config_cmd

    key = "sk-abcdefghijklmnop1234"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def explode(*_a, **_k):
        raise RuntimeError(f"boom with {key} at redis://:hunter2pass@10.0.0.1:6379/0")

    monkeypatch.setattr(config_cmd, "_masked", explode)
    result = invoke("config", "show")
    assert result.exit_code == 1
    assert "internal error: RuntimeError: boom" in result.output and "--debug" in result.output
    assert key not in result.output and "hunter2pass" not in result.output
    assert "****1234" in result.output and "redis://:****@10.0.0.1" in result.output
    debug = run_in_process("--debug", "config", "show")  # the traceback is masked too
    assert "Traceback" in debug.output and key not in debug.output and "hunter2pass" not in debug.output


def test_db_upgrade_and_status(migrated_database) -> None:
    up = invoke("db", "upgrade", "--json")
    assert up.exit_code == 0 and json.loads(up.stdout)["to"] == json.loads(up.stdout)["head"]
    status = json.loads(invoke("db", "status", "--json").stdout)
    assert status["up_to_date"] is True and status["current"] == status["head"]


def test_db_unreachable_exit_69(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    result = invoke("db", "status")
    assert result.exit_code == 69 and "database unreachable" in result.output and ":pw@" not in result.output
