"""`up` and `down`: the embedded broker, migrations, worker nodes and beat, in that order and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from carsctl.lifecycle.beat_node import start_beat, stop_beat
from carsctl.lifecycle.flower_node import stop_flower
from carsctl.lifecycle.node_control import stop_nodes
from carsctl.lifecycle.node_specs import (
    COLD_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    AppLoader,
    Progress,
    default_app,
    exit_code_of,
    say,
)
from carsctl.lifecycle.worker_nodes import start_workers
from carsctl.process import supervise
from carsctl.process.nodes import NodeState, list_nodes, load_node

if TYPE_CHECKING:
    from cars_bot.config import Settings


def bring_up(settings: Settings, nodes: Sequence[NodeState], *, beat: bool = True,
             timeout: float = START_TIMEOUT, app_loader: AppLoader = default_app,
             progress: Progress | None = None) -> dict[str, Any]:
    """Embedded broker (when no REDIS_URL), database migrations, worker nodes, beat: in that order.

    Stops at the first step that fails (`"ok": False`); every step is idempotent, so running it again
    after fixing the cause continues where it stopped.
    """
    from carsctl.health.connectivity import check_broker, check_database
    from carsctl.process import embedded_redis

    steps: dict[str, Any] = {"ok": False}
    if settings.uses_embedded_broker:
        steps["broker"] = embedded_redis.start(settings)
        say(progress, f"broker: embedded Redis {'started' if steps['broker']['started'] else 'already running'}"
                       f" (pid {steps['broker']['pid']})")
    steps["broker_check"] = check_broker(settings)
    check_database(settings)
    from cars_bot.db.migrate import upgrade

    steps["database"] = upgrade(settings.database_url)
    say(progress, f"database: at revision {steps['database']['to']}")
    steps["workers"] = start_workers(settings, nodes, timeout=timeout, app_loader=app_loader, progress=progress)
    if any(r["state"] == "failed" for r in steps["workers"]):
        return steps
    if beat:
        steps["beat"] = start_beat(settings, timeout=timeout, progress=progress)
        if steps["beat"]["state"] == "failed":
            return steps
    steps["ok"] = True
    return steps


def bring_down(settings: Settings, *, timeout: float = STOP_TIMEOUT, cold_timeout: float = COLD_TIMEOUT,
               force: bool = False, keep_broker: bool = False, app_loader: AppLoader = default_app,
               progress: Progress | None = None) -> dict[str, Any]:
    """Flower, beat, worker nodes, then the embedded broker: the reverse of `bring_up`."""
    from carsctl.process import embedded_redis

    steps: dict[str, Any] = {}
    if load_node(settings, "flower") is not None:
        steps["flower"] = stop_flower(settings)
    if load_node(settings, "beat") is not None:
        steps["beat"] = stop_beat(settings, cold_timeout=cold_timeout, force=force, progress=progress)
    steps["workers"] = stop_nodes(settings, list_nodes(settings), timeout=timeout, cold_timeout=cold_timeout,
                                  force=force, app_loader=app_loader, progress=progress)
    left = [r for r in [steps.get("beat"), *steps["workers"]] if r and r["outcome"] == supervise.STILL_RUNNING]
    if settings.uses_embedded_broker and not keep_broker and not left:
        steps["broker"] = embedded_redis.stop(settings)
    codes = [r["exit_code"] for r in [steps.get("flower"), steps.get("beat"), *steps["workers"]] if r]
    steps["exit_code"] = exit_code_of(codes)
    return steps
