"""Test support for the operations commands: messages as the broker holds them, carsctl's node state,
and waiting for processes (by polling a condition, never by sleeping a guessed time)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

QUEUE_SEP = ":"


def priority_key(queue: str, priority: int) -> str:
    """The Redis list a message of this urgency is filed in (9 -> the base list, 0 -> `queue:9`)."""
    level = 9 - priority
    return queue if level == 0 else f"{queue}{QUEUE_SEP}{level}"


def decode(raw: bytes) -> dict[str, Any]:
    """A kombu Redis message: its headers and its task arguments."""
    message = json.loads(raw)
    body = json.loads(base64.b64decode(message["body"]))
    return {"headers": message["headers"], "args": body[0], "kwargs": body[1],
            "priority": message["properties"].get("priority")}


def queued(redis_client: Any, queue: str) -> dict[str, list[dict[str, Any]]]:
    """Every message waiting in `queue`, by the Redis key it sits in."""
    keys = [queue] + [f"{queue}{QUEUE_SEP}{level}" for level in range(1, 10)]
    return {key.decode() if isinstance(key, bytes) else key: [decode(raw) for raw in redis_client.lrange(key, 0, -1)]
            for key in keys if redis_client.llen(key)}


def unacked(redis_client: Any) -> list[tuple[str, dict[str, Any]]]:
    """(routing key, message) of every entry in the `unacked` hash."""
    entries = []
    for raw in redis_client.hvals("unacked"):
        payload, _exchange, routing_key = json.loads(raw)
        entries.append((routing_key, payload))
    return entries


def save_worker_state(settings: Any, process: subprocess.Popen[bytes], node: str, name: str | None = None) -> None:
    """Record a test worker in carsctl's node state, as `carsctl worker start` would."""
    import psutil

    from carsctl.process.nodes import NodeState, save_node

    save_node(settings, NodeState(name=name or node.split("@", 1)[0], hostname=node, pid=process.pid,
                                  create_time=psutil.Process(process.pid).create_time(), queues=["monitoring"]))


#: The task module the lifecycle tests' workers import (`-I`), written by the `lifecycle` fixture.
TASKS_MODULE = "carsctl_lifecycle_tasks"
#: Its task: sleeps, leaving `<marker>.started` and `<marker>.done` files.
SLEEP_TASK = "carsctl_test.sleep"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


