"""The secret scan (issue 15): recognisable fake secrets in every credential variable, the common commands,
`up`, a worker with succeeding and failing tasks, `flower`, `systemd`, then a search of everything the
project printed, logged, stored or put on a command line: no secret may appear, not even in part.

Every fake secret contains the tag FAKESCAN (any case) away from its last 4 characters (which a masked
value may show), so one case-insensitive search for the tag finds a whole or a partial leak, raw or
percent-encoded. The inputs the user wrote (`.env`, the credentials file) are the only places it may be.

Searched: stdout and stderr of every command; every file under CARSCTL_HOME (SQLite database and WAL,
outbox, node state, beat schedule) and LOG_DIR (worker, beat, Flower logs, failed-task fallback); the
argv of every process carsctl spawned (nodes, their pool children, Flower), read with psutil while they
run; every key and value in the Redis used as broker and result backend (task messages, results, the
beat lock, remote-control replies); the failed-task registry (`task failed --json`, and its table in the
SQLite file).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

TAG = re.compile(rb"fakescan", re.IGNORECASE)
REDIS_PASSWORD = "FAKESCAN-redis-pw-7Q2w"
FLOWER_PASSWORD = "FAKESCAN-flower-pw-5K8z"
ENCODED_PASSWORD = "FAKESCAN/enc@pw:3"  # appears percent-encoded in its URL
SECRETS = {
    "OPENAI_API_KEY": "sk-proj-FAKESCANopenaiKEY0123456789abcdef",
    "TELEGRAM_API_ID": "123456",
    "TELEGRAM_API_HASH": "fakescanapihash0123456789abcdef01",
    "TELEGRAM_BOT_TOKEN": "7012345678:FAKESCANbotTOKENabcdefghijklmnopq",
    "TELEGRAM_SESSION_STRING": "1FAKESCANpublishSESSION" + "Aa0" * 20,
    "TELEGRAM_MONITOR_SESSION_STRING": "1FAKESCANmonitorSESSION" + "Bb1" * 20,
    # No TELEGRAM_CHANNEL: Telegram is not configured, so the published post goes to the outbox (searched).
    "GOOGLE_SPREADSHEET_ID": "1scanSpreadsheetId0123456789",
}
GOOGLE_CREDENTIALS = {
    "type": "service_account", "project_id": "scan-project", "private_key_id": "fakescan0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEFAKESCANgooglePrivateKey0123456789\n-----END PRIVATE KEY-----\n",
    "client_email": "scan@scan-project.iam.gserviceaccount.com", "client_id": "1234567890",
    "token_uri": "http://127.0.0.1:1/token",
}
# URL forms for the light commands (the brokers and databases are unreachable: their error paths are scanned)
URL_VARIANTS = {
    "database user:password and ?password=": (
        {"DATABASE_URL": "postgresql://scan:FAKESCAN-db-pw-9Z4@127.0.0.1:1/cars?password=FAKESCAN-dbq-pw-3X1"
                         "&sslmode=disable&connect_timeout=1"},
        [("config", "show"), ("db", "status"), ("db", "status", "--json"), ("status", "--json"), ("doctor",)]),
    "sentinel, one password per host": (
        {"CELERY_BROKER_URL": "sentinel://:FAKESCAN-sentinel-a1@127.0.0.1:1;sentinel://:FAKESCAN-sentinel-b2@127.0.0.1:2",
         "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/0?password=FAKESCAN-backend-q4"},
        [("config", "show", "--json"), ("status",), ("doctor", "--json")]),
    "percent-encoded password": (
        {"REDIS_URL": f"redis://:{quote(ENCODED_PASSWORD, safe='')}@127.0.0.1:1/0"},
        [("config", "show"), ("status",), ("queues",), ("broker", "status")]),
}
LIGHT_COMMANDS = [("config", "show"), ("config", "show", "--json"), ("status",), ("status", "--json"),
                  ("doctor",), ("broker", "status"), ("queues",), ("db", "status")]
SALE = ("Продам Toyota Camry 2018 г.в., 2.5 АКПП, пробег 87 000 км, 1 владелец. Москва. Цена 2 150 000 ₽")
REPLY = {"is_sale": True, "confidence": 0.97, "reason": "продажа автомобиля с ценой",
         "car": {"brand": "Toyota", "model": "Camry", "year": 2018, "price": 2150000, "mileage": 87000,
                 "engine_volume": "2.5", "transmission": "automatic", "fuel": None, "owners": 1, "city": "Москва",
                 "equipment": None, "condition": None, "autoteka_status": "unknown", "market_price": None,
                 "price_justification": None},
         "summary": "Один владелец."}
TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from tests.cars_bot.ai.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A Redis on loopback that requires REDIS_PASSWORD (its config on stdin, not on its command line)."""
    import redis

    from carsctl.process.embedded_redis import redis_server_binary

    port = _free_port()
    (tmp_path / "redis-data").mkdir()
    process = subprocess.Popen([str(redis_server_binary()[0]), "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert process.stdin is not None
    process.stdin.write(f'port {port}\nbind 127.0.0.1\nrequirepass {REDIS_PASSWORD}\nsave ""\nappendonly no\n'
                        f'dir {tmp_path / "redis-data"}\n'.encode())
    process.stdin.close()
    client = redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD, socket_timeout=2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "the password-protected Redis did not start"
            time.sleep(0.05)
    try:
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", client
    finally:
        process.terminate()
        process.wait(timeout=10)


class Scan:
    """Everything searched, and where each occurrence of the tag was found."""

    def __init__(self) -> None:
        self.places: list[str] = []
        self.leaks: list[str] = []

    def text(self, where: str, data: bytes | str) -> None:
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        self.places.append(where)
        for match in TAG.finditer(raw):
            start = max(0, match.start() - 60)
            self.leaks.append(f"{where}: ...{raw[start:match.end() + 40]!r}...")

    def command(self, lifecycle: Any, *args: str, env: dict[str, str] | None = None,
                ok: tuple[int, ...] = (0, 1, 69)) -> subprocess.CompletedProcess[str]:
        done = lifecycle.run(*args, env=env, timeout=60)
        assert done.returncode in ok, (args, done.returncode, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr
        self.text(f"`carsctl {' '.join(args)}` stdout", done.stdout)
        self.text(f"`carsctl {' '.join(args)}` stderr", done.stderr)
        return done

    def tree(self, where: str, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_socket()):
            self.text(f"{where} {path.relative_to(root)}", path.read_bytes())

    def processes(self, home: Path) -> int:
        """The argv of every process carsctl spawned for this state directory, and of their children."""
        import psutil

        pids = {int(json.loads(p.read_text()).get("pid") or 0) for p in (home / "nodes").glob("*.json")}
        seen = 0
        for pid in pids - {0}:
            try:
                parent = psutil.Process(pid)
                for process in [parent, *parent.children(recursive=True)]:
                    self.text(f"argv of pid {process.pid}", "\0".join(process.cmdline()))
                    seen += 1
            except psutil.NoSuchProcess:
                continue
        return seen

    def redis(self, client: Any) -> int:
        keys = 0
        for key in client.scan_iter(count=500):
            self.text(f"redis key {key!r}", key + repr(_redis_value(client, key)).encode())
            keys += 1
        return keys


def _redis_value(client: Any, key: bytes) -> Any:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    return b""


@pytest.mark.parametrize("variant", list(URL_VARIANTS))
def test_every_url_form_is_masked_by_config_show_and_db_status(variant: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 item 2: `?password=` and the second sentinel host were printed as they were."""
    from tests.carsctl.cli import invoke

    env, _commands = URL_VARIANTS[variant]
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scan = Scan()
    commands = [("config", "show"), ("config", "show", "--json")]
    for args in [*commands, *([("db", "status")] if "DATABASE_URL" in env else [])]:
        result = invoke(*args)
        scan.text(f"`carsctl {' '.join(args)}`", result.stdout + result.stderr)
        assert "****" in result.stdout + result.stderr
    assert not scan.leaks, "\n".join(scan.leaks)


@pytest.mark.redis
@pytest.mark.slow
def test_no_secret_appears_anywhere(lifecycle, tmp_path: Path, fake_openai: Any, password_redis) -> None:
    redis_url, redis_client = password_redis
    credentials = tmp_path / "secrets" / "service_account.json"
    credentials.parent.mkdir()
    credentials.write_text(json.dumps(GOOGLE_CREDENTIALS))
    dotenv = {**SECRETS, "REDIS_URL": redis_url, "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_TIMEOUT": "5",
              "GOOGLE_CREDENTIALS_FILE": str(credentials), "BROKER_CONNECT_TIMEOUT": "1"}
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in dotenv.items()))
    (tmp_path / ".env").chmod(0o600)
    for name in ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        lifecycle.env.pop(name, None)  # from .env, as in production; the database is SQLite in CARSCTL_HOME
    scan = Scan()

    for env, commands in URL_VARIANTS.values():
        for args in commands:
            scan.command(lifecycle, *args, env=env)

    up = scan.command(lifecycle, "up", "--pool", "solo", "-c", "1", "--json", ok=(0,))
    assert json.loads(up.stdout)["ok"]
    try:
        scan.command(lifecycle, "flower", "--port", str(_free_port()),
                     env={"FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}"}, ok=(0,))
        # OpenAI rejects the key and, worse than the real one, quotes it whole: a permanent failure.
        fake_openai.queue_error(401, f"Incorrect API key provided: {SECRETS['OPENAI_API_KEY']}")
        failing = scan.command(lifecycle, "post", "add", "--channel", "@scan_source", "--message-id", "1",
                               "--text", SALE, "--wait", "--timeout", "60", "--json", ok=(0, 1))
        assert "failed" in failing.stdout, failing.stdout
        fake_openai.queue_completion(REPLY)  # then a post that is classified, described and published
        published = scan.command(lifecycle, "post", "add", "--channel", "@scan_source", "--message-id", "2",
                                 "--text", SALE, "--wait", "--timeout", "60", "--json", ok=(0,))
        assert "published" in published.stdout, published.stdout
        succeeding = scan.command(lifecycle, "task", "run", "collect-stats", "--wait", "--timeout", "60", "--json",
                                  ok=(0,))
        task_id = TASK_ID.search(succeeding.stdout)
        assert scan.processes(lifecycle.home) >= 3  # worker, beat, Flower (and their children)
        for args in [*LIGHT_COMMANDS, ("worker", "status"), ("beat", "status"), ("inspect", "active"),
                     ("task", "failed"), ("task", "failed", "--json"), ("post", "list"), ("post", "show", "1"),
                     ("logs", "worker", "-n", "500"), ("logs", "beat", "-n", "500"), ("systemd",),
                     ("systemd", "--output-dir", str(tmp_path / "units"))]:
            scan.command(lifecycle, *args)
        assert task_id, succeeding.stdout
        scan.command(lifecycle, "task", "result", task_id.group(0), "--json")
        assert scan.redis(redis_client) > 0
    finally:
        scan.command(lifecycle, "flower", "--stop", ok=(0, 1))
        scan.command(lifecycle, "down", "--timeout", "20", "--force", ok=(0, 1, 10, 11))
    scan.tree("CARSCTL_HOME", lifecycle.home)
    scan.tree("LOG_DIR", lifecycle.logs)
    scan.tree("systemd units", tmp_path / "units")
    # The places that would hold a leak were really searched, with the failure in them.
    assert any(p.endswith("cars_bot.sqlite3") for p in scan.places) and any("celery_worker" in p for p in scan.places)
    assert any(p.startswith("redis key b'celery-task-meta-") for p in scan.places)
    assert any(p.startswith("CARSCTL_HOME outbox/") for p in scan.places)
    worker_log = (lifecycle.logs / "celery_worker.log").read_text()
    assert "invalid_api_key" in worker_log or "Incorrect API key" in worker_log
    assert not scan.leaks, "\n".join(scan.leaks[:20])
