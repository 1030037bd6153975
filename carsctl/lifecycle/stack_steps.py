"""`up` and `down`: the embedded broker, migrations, worker nodes, beat and the monitor (when Telegram is
configured), in that order and back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carsctl.lifecycle.beat_node import start_beat, stop_beat
from carsctl.lifecycle.flower_node import stop_flower
from carsctl.lifecycle.node_control import stop_nodes
from carsctl.lifecycle.node_results import StartResult, StartState, StopOutcome, StopResult
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
from carsctl.process.nodes import NodeState, list_nodes, load_node

if TYPE_CHECKING:
    from cars_bot.config import Settings
    from cars_bot.db.migrate import Upgrade
    from carsctl.process.embedded_redis import BrokerStart, BrokerStop


@dataclass(frozen=True, slots=True)
class UpSteps:
    """What `up` did, step by step; a step not reached (or not needed) is None."""

    ok: bool
    broker: BrokerStart | None = None  # the embedded Redis (only without REDIS_URL)
    broker_check: Any = None  # carsctl.health.connectivity.check_broker's answer, as it gives it
    database: Upgrade | None = None  # the revision before and after, and the head
    workers: tuple[StartResult, ...] = ()
    beat: StartResult | None = None
    monitor: StartResult | None = None  # None: not configured (skipped with a notice) or not reached


@dataclass(frozen=True, slots=True)
class DownSteps:
    """What `down` stopped (None: it was not running / kept), and the command's exit code."""

    flower: StopResult | None = None
    monitor: StopResult | None = None
    beat: StopResult | None = None
    workers: tuple[StopResult, ...] = ()
    broker: BrokerStop | None = None
    exit_code: int = 0
    state_dir: str = ""  # the CARSCTL_HOME whose nodes and embedded Redis were stopped
    note: str | None = None  # when REDIS_URL points elsewhere but this state directory runs its own Redis


def bring_up(settings: Settings, nodes: Sequence[NodeState], *, beat: bool = True,
             timeout: float = START_TIMEOUT, app_loader: AppLoader = default_app,
             progress: Progress | None = None) -> UpSteps:
    """Embedded broker (when no REDIS_URL), database migrations, worker nodes, beat: in that order.

    Stops at the first step that fails (`ok` False); every step is idempotent, so running it again
    after fixing the cause continues where it stopped.
    """
    from carsctl.health.connectivity import check_broker, check_database
    from carsctl.process import embedded_redis

    broker = None
    if settings.uses_embedded_broker:
        broker = embedded_redis.start(settings)
        say(progress, f"broker: embedded Redis {'started' if broker.started else 'already running'}"
                       f" (pid {broker.pid})")
    broker_check = check_broker(settings)
    check_database(settings)
    from cars_bot.db.migrate import upgrade

    database = upgrade(settings.database_url)
    say(progress, f"database: at revision {database.to}")
    workers = tuple(start_workers(settings, nodes, timeout=timeout, app_loader=app_loader, progress=progress))
    started_beat = None
    if beat and not any(r.state is StartState.FAILED for r in workers):
        started_beat = start_beat(settings, timeout=timeout, progress=progress)
    started_monitor = None
    if not any(r.state is StartState.FAILED for r in workers):
        started_monitor = _start_monitor_if_configured(settings, timeout, progress)
    started = [r for r in (started_beat, started_monitor) if r is not None]
    ok = not any(r.state is StartState.FAILED for r in [*workers, *started])
    return UpSteps(ok=ok, broker=broker, broker_check=broker_check, database=database, workers=workers,
                   beat=started_beat, monitor=started_monitor)


def _start_monitor_if_configured(settings: Settings, timeout: float, progress: Progress | None) -> StartResult | None:
    from cars_bot.monitor.client import session_problem
    from carsctl.lifecycle.monitor_node import start_monitor

    problem = session_problem(settings)
    if problem is not None:  # not configured, or configured so that it cannot start: `doctor` says why too
        say(progress, f"monitor: skipped ({problem})")
        return None
    return start_monitor(settings, timeout=timeout, progress=progress)


def bring_down(settings: Settings, *, timeout: float = STOP_TIMEOUT, cold_timeout: float = COLD_TIMEOUT,
               force: bool = False, keep_broker: bool = False, app_loader: AppLoader = default_app,
               progress: Progress | None = None) -> DownSteps:
    """Flower, beat, worker nodes, then the embedded broker: the reverse of `bring_up`.

    What THIS state directory started, whatever the environment says now: its recorded nodes, and its
    embedded Redis when one answers on its socket, even with a REDIS_URL set since `up` (stopping the
    nodes and leaving their Redis running would strand it). A broker elsewhere is never touched.
    """
    from carsctl.process import embedded_redis

    own_redis = embedded_redis.status(settings).running
    note = None
    if own_redis and not settings.uses_embedded_broker:
        from cars_bot.secret_masking import mask_url

        note = (f"{settings.home} runs its own embedded Redis: stopping what it started there, "
                f"not anything on {mask_url(settings.broker_url)}")
        say(progress, note)
        app_loader = _embedded_app_loader(settings)
    flower = stop_flower(settings) if load_node(settings, "flower") is not None else None
    monitor = None
    if load_node(settings, "monitor") is not None:  # first: no new posts while the workers stop
        from carsctl.lifecycle.monitor_node import stop_monitor

        monitor = stop_monitor(settings, cold_timeout=cold_timeout, force=force, progress=progress)
    beat = None
    if load_node(settings, "beat") is not None:
        beat = stop_beat(settings, cold_timeout=cold_timeout, force=force, progress=progress)
    workers = tuple(stop_nodes(settings, list_nodes(settings), timeout=timeout, cold_timeout=cold_timeout,
                               force=force, app_loader=app_loader, progress=progress))
    left = [r for r in [monitor, beat, *workers] if r and r.outcome is StopOutcome.STILL_RUNNING]
    broker = None
    if (settings.uses_embedded_broker or own_redis) and not keep_broker and not left:
        broker = embedded_redis.stop(settings)
    codes = [r.exit_code for r in [flower, monitor, beat, *workers] if r]
    return DownSteps(exit_code=exit_code_of(codes), workers=workers, flower=flower, monitor=monitor, beat=beat,
                     broker=broker, state_dir=str(settings.home), note=note)


def _embedded_app_loader(settings: Settings) -> AppLoader:
    """A Celery app on this state directory's embedded Redis (where its nodes listen), built on demand."""
    import dataclasses

    def load() -> Any:
        from cars_bot.celery_app import create_app

        return create_app(dataclasses.replace(settings, redis_url=None, celery_broker_url=None,
                                              celery_result_backend=None))

    return load
