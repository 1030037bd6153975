"""The rules of ARCHITECTURE.md, checked on the source so they stay true.

- `cars_bot` never imports `carsctl`; no command module imports another (shared options live in
  carsctl/options.py, shared printers in carsctl/reports.py).
- Every carsctl module has a name of its own, and no carsctl service module shares a name with a
  cars_bot module.
- Private kombu/Celery names are used in one module only: cars_bot/broker.py.
- No source file over 600 lines except the rules backend (its patterns are data in code).
- Public service and domain functions return typed results, not `dict[str, Any]`.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cars_bot", "carsctl")
MAX_LINES = 600
LONG_FILES_ALLOWED = {"cars_bot/ai/rules.py"}  # the offline backend's patterns and vocabularies
PRIVATE_API_OWNER = "cars_bot/broker.py"
#: Underscore names that are documented public API (namedtuple's methods).
DOCUMENTED_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make"}
#: Names each package may have for itself: its own error types.
SHARED_NAMES = {"errors"}
#: Public functions that may return `dict[str, Any]`, and why.
UNTYPED_ALLOWED = {
    "cars_bot/broker.py:task_route": "kombu publish options, handed on as keyword arguments",
    "cars_bot/celery_app.py:celery_config": "Celery's configuration mapping (app.conf.update)",
    "cars_bot/posts.py:read_jsonl": "raw records as read, validated by the caller",
    "cars_bot/celery_app.py:route_task": "Celery's router contract: a dict of publish options",
}


def _sources(*roots: str) -> Iterator[Path]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_cars_bot_never_imports_carsctl() -> None:
    offenders = [_relative(p) for p in _sources("cars_bot") if any(m.split(".")[0] == "carsctl" for m in _imports(p))]
    assert not offenders


def test_no_command_module_imports_another() -> None:
    offenders = []
    for path in _sources("carsctl/commands"):
        for module in _imports(path):
            if module.startswith("carsctl.commands.") and module != f"carsctl.commands.{path.stem}":
                offenders.append(f"{_relative(path)} imports {module}")
    assert not offenders


def test_module_names_are_unique() -> None:
    carsctl = [p for p in _sources("carsctl") if p.stem not in ("__init__", "__main__")]
    repeated = [name for name, count in Counter(p.stem for p in carsctl).items() if count > 1]
    assert not repeated, f"carsctl modules sharing a name: {repeated}"
    services = {p.stem for p in carsctl if "commands" not in p.parts}
    domain = {p.stem for p in _sources("cars_bot")} | {p.name for p in (ROOT / "cars_bot").iterdir() if p.is_dir()}
    clash = (services & domain) - SHARED_NAMES
    assert not clash, f"carsctl service modules named like cars_bot modules: {clash}"


def _foreign_private_names(path: Path, ours: set[str]) -> Iterator[str]:
    """`obj._name` / `hasattr(obj, "_name")` / `from x import _name` where `_name` is not defined in our code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "hasattr", "getattr", "setattr", "delattr") and len(node.args) > 1:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                name = arg.value
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                name = str(arg.values[0].value)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] not in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield f"{node.module}.{alias.name}"
            continue
        if name and name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in ours \
                and name not in DOCUMENTED_UNDERSCORE:
            yield f"{name} (line {node.lineno})"


def _names_defined_in(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def test_private_kombu_and_celery_names_are_used_in_one_module() -> None:
    paths = list(_sources(*PACKAGES))
    ours = _names_defined_in([p for p in paths if _relative(p) != PRIVATE_API_OWNER])
    offenders = {}
    for path in paths:
        if _relative(path) == PRIVATE_API_OWNER:
            continue
        found = list(_foreign_private_names(path, ours))
        if found:
            offenders[_relative(path)] = found
    assert not offenders, offenders


def test_the_owner_of_private_names_is_the_broker_module() -> None:
    text = (ROOT / PRIVATE_API_OWNER).read_text(encoding="utf-8")
    for name in ("_q_for_pri", "unacked_key", "_publish(", "_put_fanout", "_get_exec_options", "_orig_"):
        assert name in text, f"{name} moved out of {PRIVATE_API_OWNER}: update ARCHITECTURE.md and this test"


def test_no_source_file_is_over_600_lines() -> None:
    long = {}
    for path in _sources(*PACKAGES, "tests", "bench"):
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_LINES and _relative(path) not in LONG_FILES_ALLOWED:
            long[_relative(path)] = lines
    assert not long, f"split these along their seams: {long}"


def _untyped_public_functions(path: Path) -> Iterator[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            returns = ast.unparse(node.returns) if node.returns is not None else ""
            if "dict[str, Any]" in returns:
                yield node.name


def test_public_service_functions_return_typed_results() -> None:
    offenders = []
    for path in _sources(*PACKAGES):
        relative = _relative(path)
        if relative.startswith(("carsctl/commands/", "cars_bot/tasks/")):
            continue  # commands return nothing; Celery tasks return JSON for the result backend
        for name in _untyped_public_functions(path):
            if f"{relative}:{name}" not in UNTYPED_ALLOWED:
                offenders.append(f"{relative}:{name}")
    assert not offenders, f"return a frozen dataclass instead of dict[str, Any]: {offenders}"


def test_settings_has_a_typed_field_for_every_variable() -> None:
    import dataclasses

    from cars_bot.config import VARS, Settings

    fields = {f.name: f.type for f in dataclasses.fields(Settings)}
    assert [v.attr for v in VARS if v.attr not in fields] == []
    assert all(fields[v.attr] not in ("Any", "object") for v in VARS)


def test_every_name_imported_from_the_project_exists() -> None:
    """`from cars_bot.x import name` (also inside functions, where nothing runs it at import time) names
    something module x has: a name moved by a refactor or a merge fails here, not on a user's machine."""
    import importlib

    missing = []
    for path in _sources(*PACKAGES, "tests"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    and node.module.split(".")[0] in PACKAGES):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name != "*" and not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{_relative(path)}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, "\n".join(missing)
