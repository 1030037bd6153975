"""The error boundary (carsctl/app.py): file-system and database failures are one line with an exit code,
never "internal error" with a multi-line dump."""

from __future__ import annotations

import pytest

from tests.carsctl.cli import invoke


def test_an_unwritable_output_dir_names_the_path_and_the_reason(settings, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("systemd", "--output-dir", str(blocker / "units"))
    assert result.exit_code == 1, result.output
    assert result.stderr == f"carsctl: error: cannot use {blocker / 'units'}: Not a directory\n"


def test_typed_errors_of_the_layers_below() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    from cars_bot.db.migrate import DatabaseBehind, UnknownRevision
    from carsctl.errors import typed_error

    locked = typed_error(OperationalError("SELECT 1\nFROM posts", {}, Exception("database is locked")))
    assert (locked.exit_code, str(locked)) == (69, "database error: database is locked")
    refused = typed_error(IntegrityError("INSERT ...", {}, ValueError("duplicate key\nDETAIL: ...")))
    assert (refused.exit_code, str(refused)) == (1, "database error: ValueError: duplicate key")
    assert typed_error(DatabaseBehind("behind")).exit_code == 69
    assert typed_error(UnknownRevision("nope")).exit_code == 2
    assert typed_error(PermissionError(13, "Permission denied", "/etc/x")).exit_code == 1
    assert typed_error(OverflowError("Python int too large to convert to SQLite INTEGER")).exit_code == 2
    assert typed_error(RuntimeError("unexpected")) is None


def test_a_limit_too_large_for_the_database_is_a_usage_error(db, settings) -> None:
    result = invoke("task", "failed", "--limit", "99999999999999999999")
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output, result.output


@pytest.mark.parametrize("node", ["a::²", "a::0", "a::99999999999999999999999", "a::٣"])
def test_a_node_concurrency_that_is_not_a_small_integer_is_a_usage_error(settings, node) -> None:
    result = invoke("systemd", "--node", node)
    assert result.exit_code == 2, result.output
    assert "the concurrency must be an integer from 1 to 10000" in result.stderr
