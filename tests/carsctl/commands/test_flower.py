"""`carsctl flower`: detached, loopback by default, authentication required elsewhere."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request

import psutil
import pytest

from tests.carsctl.ops import pid_alive

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_flower_refuses_a_public_address_without_authentication(lifecycle) -> None:
    refused = lifecycle.invoke("flower", "--address", "0.0.0.0")
    assert refused.exit_code == 2 and "without authentication" in refused.stderr
    assert lifecycle.invoke("flower", "--basic-auth", "nopassword").exit_code == 2
    assert lifecycle.state("flower") is None
    stop = lifecycle.invoke("flower", "--stop")
    assert stop.exit_code == 0 and "was not running" in stop.stderr


def test_flower_starts_detached_with_auth_kept_out_of_argv(lifecycle) -> None:
    port, password = _free_port(), "s3cret-flower-pw"
    start = lifecycle.run("flower", "--port", str(port), "--basic-auth", f"ops:{password}", "--json")
    assert start.returncode == 0, start.stderr
    result = json.loads(start.stdout)[0]
    assert result["url"] == f"http://127.0.0.1:{port}/"
    assert _get(result["url"]) == 401
    assert _get(result["url"] + "healthcheck", f"ops:{password}") == 200
    process = psutil.Process(result["pid"])
    assert password not in " ".join(process.cmdline())
    assert password not in (lifecycle.home / "nodes" / "flower.json").read_text()
    assert (lifecycle.home / "run" / "flower.pid").read_text().strip() == str(result["pid"])
    assert "already running" in lifecycle.run("flower", "--port", str(port)).stderr
    stop = lifecycle.run("flower", "--stop")
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(result["pid"])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize(("auth", "problem"), [
    ("user:", "empty password for user 'user'"),
    ("ops:short", "password of user 'ops' is too weak"),
    ("ops:long-enough-pw,guest:", "empty password for user 'guest'"),
    ("operator:operator", "too weak"),
    (":password123", "must be user:password"),
])
def test_flower_refuses_a_weak_password_off_loopback(lifecycle, auth: str, problem: str) -> None:
    """Issue 15 item 8: `--address 0.0.0.0 --basic-auth 'user:'` started and answered 200."""
    refused = lifecycle.invoke("flower", "--address", "0.0.0.0", "--basic-auth", auth)
    assert refused.exit_code == 2 and problem in refused.stderr, refused.stderr
    user, _, password = auth.partition(":")
    assert password in ("", user) or password not in refused.stderr  # the message names the user only
    assert lifecycle.state("flower") is None
    env_refused = lifecycle.run("flower", "--address", "0.0.0.0", env={"FLOWER_BASIC_AUTH": auth})
    assert env_refused.returncode == 2 and problem in env_refused.stderr
