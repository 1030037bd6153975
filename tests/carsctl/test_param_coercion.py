"""Plain option values are converted without pydantic, to exactly what Typer's own converter gives."""

import subprocess
import sys
from typing import Annotated, Any

import pytest
import typer
from typer._click.exceptions import BadParameter

from carsctl.param_coercion import PlainRuntimeParam, install


def _command(annotation: Any, **option: Any) -> Any:
    app = typer.Typer()

    @app.command()
    def run(value: Annotated[annotation, typer.Option("--value", **option)] = None) -> None:  # type: ignore[valid-type]
        pass

    return typer.main.get_command(app)


def _convert(command: Any, value: Any) -> tuple[str, Any]:
    param = next(p for p in command.params if p.name == "value")
    ctx = command.make_context("run", [])
    try:
        return "ok", param.get_runtime_param().coerce(value, param=param, ctx=ctx)
    except BadParameter as error:
        return "error", error.format_message()


CASES = [
    (int, {}, ["1", "-2", "007", "1.5", "abc", " 3", "1_000", 4, True]),
    (float, {}, ["1", "1.5", ".5", "-0.25", "1e3", "abc", "inf", 2, 2.5]),
    (float, {"min": 0.0}, ["0", "-1", "2.5"]),
    (int, {"min": 1, "max": 5}, ["0", "1", "5", "6"]),
    (int, {"min": 1, "max": 5, "clamp": True}, ["0", "9"]),
    (str, {}, ["x", ""]),
    (list[str] | None, {}, [("a", "b"), ()]),
    (int | None, {}, ["3", "x"]),
]


@pytest.mark.parametrize(("annotation", "option", "values"), CASES)
def test_the_same_value_or_the_same_error_as_typer(annotation, option, values) -> None:
    for value in values:
        ours, typers = _command(annotation, **option), _command(annotation, **option)
        install(ours)
        assert isinstance(next(p for p in ours.params if p.name == "value")._runtime_param, PlainRuntimeParam)
        ok_ours, result_ours = _convert(ours, value)
        ok_typer, result_typer = _convert(typers, value)
        assert (ok_ours, result_ours, type(result_ours)) == (ok_typer, result_typer, type(result_typer)), value


def test_other_types_are_left_to_typer() -> None:
    from enum import StrEnum

    class Colour(StrEnum):
        RED = "red"

    command = _command(Colour)
    install(command)
    assert next(p for p in command.params if p.name == "value")._runtime_param is None


def test_a_command_with_plain_options_imports_no_pydantic() -> None:
    code = ("import sys; from carsctl.app import main; sys.argv=['carsctl', '-v', 'inspect', 'active', '--timeout',"
            " '0.01', '-d', 'nobody', '-h']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('PYDANTIC=' + str('pydantic' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.rstrip().endswith("PYDANTIC=False"), out
