"""Plain values of plain options converted without pydantic.

Typer converts every parameter value through a pydantic TypeAdapter, built on first use; importing
pydantic and building the adapters costs every carsctl command 50-70 ms before it does anything. Most
carsctl options are a bool, an int, a float, a string or a list of strings: `install` gives those a
converter that handles the well-formed value directly and hands anything else (a malformed number,
a value outside `min`/`max`, a `clamp`) to Typer's own converter, so errors read exactly as before.

It uses Typer's internal coercion hook (`_TyperParameter._runtime_param`); when a Typer release moves
it, `install` does nothing and Typer converts everything itself, as before.
"""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)")

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover - a Typer without the hook: Typer converts everything itself
    RuntimeParam = None  # type: ignore[assignment,misc]


def _plain_type(annotation: Any) -> tuple[type, bool] | None:
    """(int|float|str|bool, is_list) for `X`, `X | None`, `list[str]` and `list[str] | None`; else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        return (str, True) if item is str else None
    return (annotation, False) if annotation in (bool, int, float, str) else None


def _convert(kind: type, value: Any) -> tuple[bool, Any]:
    """(True, converted) for a well-formed value, (False, None) otherwise."""
    if kind is str:
        return isinstance(value, str), value
    if kind is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, None
    if kind is int:
        if isinstance(value, int):
            return True, value
        return (True, int(value)) if isinstance(value, str) and _INT.fullmatch(value) else (False, None)
    if isinstance(value, (int, float)):
        return True, float(value)
    return (True, float(value)) if isinstance(value, str) and _FLOAT.fullmatch(value) else (False, None)


if RuntimeParam is not None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc,valid-type]
        """Converts a well-formed plain value itself; anything else goes to Typer's converter."""

        kind: type = str
        is_list: bool = False
        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            values = value if self.is_list and isinstance(value, (list, tuple)) else None
            if self.is_list and values is not None:
                converted = [_convert(self.kind, item) for item in values]
                if all(ok for ok, _ in converted):
                    return [item for _, item in converted]
            elif not self.is_list:
                ok, result = _convert(self.kind, value)
                if ok and not getattr(info, "clamp", False) and (
                        self.kind not in (int, float)
                        or ((info.min is None or result >= info.min) and (info.max is None or result <= info.max))):
                    return result
            return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def install(command: Any) -> None:
    """Give the plain options of `command` and its subcommands the pydantic-free converter (the help
    option too, which Typer creates when a context first asks for it)."""
    if RuntimeParam is None:
        return
    for param in getattr(command, "params", ()):
        _install(param)
    if callable(getattr(command, "get_help_option", None)) and "get_help_option" not in vars(command):
        original = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            option = original(ctx)
            if option is not None:
                _install(option)
            return option

        command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        install(sub)


def _install(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return
    plain = _plain_type(descriptor.annotation)
    info = descriptor.parameter_info
    if plain is None or descriptor.file_annotation is not None or getattr(info, "parser", None) is not None \
            or getattr(info, "click_type", None) is not None:
        return
    param._runtime_param = PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation, kind=plain[0],
                                             is_list=plain[1], descriptor=descriptor)
