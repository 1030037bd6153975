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


def _get_json(url: str, auth: str) -> tuple[int, object]:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def test_flower_broker_tab_counts_all_ten_priorities(lifecycle, celery_app_real) -> None:
    """Issue 14: the Broker tab answered 404 ("'redis' broker is not supported"): the broker URL Flower
    got named the project's transport class. It now counts each queue over the ten priority sub-lists."""
    for priority in range(10):  # 1 message at priority 0, 2 at 1, ... 10 at 9: 55, in all ten sub-lists
        for _ in range(priority + 1):
            celery_app_real.send_task("tests.flower.nothing", queue="sheets_sync", priority=priority)
    port, auth = _free_port(), "ops:s3cret-flower-pw"
    start = lifecycle.run("flower", "--port", str(port), "--basic-auth", auth, "--json")
    assert start.returncode == 0, start.stderr
    url = json.loads(start.stdout)[0]["url"]
    assert _get(url + "broker", auth) == 200
    status, lengths = _get_json(url + "api/queues/length", auth)
    assert status == 200, lengths
    flower_counts = {q["name"]: q["messages"] for q in lengths["active_queues"]}
    queues = lifecycle.run("queues", "--json")
    ours = {row["queue"]: row["ready"] for row in json.loads(queues.stdout)["queues"]}
    assert flower_counts["sheets_sync"] == ours["sheets_sync"] == 55
    assert _get(url + "api/queues/length") == 401  # the API needs --basic-auth (documented)
    assert "not supported" not in (lifecycle.logs / "flower.log").read_text()


def test_flower_app_reports_a_redis_url_flower_knows(monkeypatch, tmp_path) -> None:
    from cars_bot.config import get_settings, reset_settings
    from carsctl.lifecycle.flower_app import flower_app

    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1:6379/6")
    reset_settings()
    with flower_app(get_settings()).connection() as connection:
        assert connection.as_uri(include_password=True) == "redis://:pw@127.0.0.1:6379/6"
        assert connection.as_uri() == "redis://:**@127.0.0.1:6379/6"
        assert connection.transport_cls == "cars_bot.broker:PriorityRedisTransport"  # still ours
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARSCTL_HOME", str(tmp_path / "h"))
    reset_settings()
    try:
        with flower_app(get_settings()).connection() as connection:  # the embedded broker
            assert connection.as_uri(include_password=True) == f"redis+socket://{tmp_path / 'h' / 'redis.sock'}"
    finally:
        reset_settings()
