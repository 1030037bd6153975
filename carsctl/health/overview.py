"""`carsctl status`: one answer to "is everything OK?", gathered in well under half a second.

Broker, database and failed-task count, each worker node (the ones carsctl started, from its node
state, and any other worker that answers), beat (its heartbeat in the broker), queue depths and the
monitor service. The three worker broadcasts return as soon as every listening worker has replied
(carsctl.cluster.remote_control), so a healthy cluster costs a few milliseconds of remote control.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsctl.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CarsctlError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings



def gather(app: Celery, settings: Settings, timeout: float = 1.0) -> dict[str, Any]:
    """Everything `status` shows, as plain data, with `problems` (one line each) and the exit code."""
    from carsctl.health.connectivity import check_broker

    began = time.monotonic()
    report: dict[str, Any] = {"checked_at": datetime.now(UTC), "problems": []}
    try:
        report["broker"] = check_broker(settings)
    except CarsctlError as error:
        report["broker"] = {"reachable": False, "error": str(error)}
        report["problems"].append(f"broker: {error}")
    report["database"] = database_status(settings)
    if not report["database"]["reachable"]:
        report["problems"].append(f"database: {report['database']['error']}")
    if report["broker"]["reachable"]:
        report["nodes"] = node_status(app, settings, timeout)
        report["queues"] = _queues(app)
        report["beat"] = beat_status(app, settings)
    else:
        report["nodes"] = [{**_state_row(state), "state": "unknown"} for state in _states(settings)]
        report["queues"], report["beat"] = [], {"state": "unknown"}
    report["monitor"] = monitor_status(settings)
    report["problems"] += _node_problems(report)
    unavailable = not report["broker"]["reachable"] or not report["database"]["reachable"]
    report["exit_code"] = EXIT_UNAVAILABLE if unavailable else EXIT_FAILED if report["problems"] else EXIT_OK
    report["elapsed_ms"] = round((time.monotonic() - began) * 1000, 1)
    return report


def database_status(settings: Settings) -> dict[str, Any]:
    """Reachable, and how many failed tasks wait in the registry (one COUNT query, no Alembic)."""
    from cars_bot.config import mask_url

    url = settings.database_url
    query = "SELECT count(*) FROM failed_tasks WHERE status = 'failed'"
    try:
        if url.startswith("sqlite:///"):
            # the standard library's driver: SQLAlchemy's import alone costs more than this whole check
            import sqlite3

            path = url.removeprefix("sqlite:///")
            if not Path(path).exists():
                return {"url": mask_url(url), "reachable": False, "failed_tasks": None,
                        "error": "not created yet (run `carsctl db upgrade`)"}
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as connection:
                failed = connection.execute(query).fetchone()[0]
        else:
            from sqlalchemy import text

            from cars_bot.db.session import get_engine

            with get_engine(url).connect() as connection:
                failed = connection.execute(text(query)).scalar_one()
    except Exception as error:  # noqa: BLE001 - any driver error means unreachable or not migrated
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        if "no such table" in reason or "does not exist" in reason:
            reason = "not migrated (run `carsctl db upgrade`)"
        return {"url": mask_url(url), "reachable": False, "error": reason, "failed_tasks": None}
    return {"url": mask_url(url), "reachable": True, "failed_tasks": int(failed)}


def _states(settings: Settings) -> list[Any]:
    from carsctl.process.nodes import list_nodes

    return list_nodes(settings)


def _state_row(state: Any) -> dict[str, Any]:
    return {"node": state.hostname, "name": state.name, "pid": state.pid, "host": state.hostname.rsplit("@", 1)[-1],
            "queues": state.queues, "concurrency": state.concurrency, "started_by_carsctl": True,
            "active": None, "reserved": None, "processed": None, "uptime_s": None}


def node_status(app: Celery, settings: Settings, timeout: float = 1.0) -> list[dict[str, Any]]:
    """One row per worker node: carsctl's own (even when down) and every other that answered."""
    from carsctl.cluster.remote_control import broadcast, known_nodes

    stats = broadcast(app, "stats", timeout=timeout, settings=settings)
    expected = set(stats.replies)
    active = broadcast(app, "active", {"safe": True}, destination=sorted(expected), timeout=timeout) \
        if expected else None
    reserved = broadcast(app, "reserved", {"safe": True}, destination=sorted(expected), timeout=timeout) \
        if expected else None
    _alive, gone = known_nodes(settings)
    rows = {state.hostname: {**_state_row(state), "state": "not running" if state.hostname in gone else "silent"}
            for state in _states(settings)}
    for node, data in stats.replies.items():
        pool = data.get("pool") or {}
        row = rows.setdefault(node, {"node": node, "name": node.split("@", 1)[0], "host": node.rsplit("@", 1)[-1],
                                     "queues": [], "started_by_carsctl": False})
        row.update({
            "state": "online", "pid": data.get("pid"), "concurrency": pool.get("max-concurrency"),
            "processed": sum((data.get("total") or {}).values()), "uptime_s": data.get("uptime"),
            "active": len((active.replies if active else {}).get(node) or []),
            "reserved": len((reserved.replies if reserved else {}).get(node) or []),
        })
    silent_unnamed = stats.silent_unnamed
    result = sorted(rows.values(), key=lambda r: r["node"])
    if silent_unnamed:
        result.append({"node": f"({silent_unnamed} unnamed)", "state": "silent", "started_by_carsctl": False})
    return result


def _queues(app: Celery) -> list[dict[str, Any]]:
    from cars_bot.broker import queue_depths

    return [{"queue": name, "ready": d["ready"], "unacked": d["unacked"],
             "by_priority": {str(k): v for k, v in sorted(d["by_priority"].items(), reverse=True)}}
            for name, d in queue_depths(app).items()]


def beat_status(app: Celery, settings: Settings) -> dict[str, Any]:
    """Beat: its heartbeat in the broker (alive and ticking?) and whether carsctl started it."""
    from carsctl.cluster.remote_control import pid_running
    from carsctl.process.nodes import list_nodes

    heartbeat = read_beat_heartbeat(app)
    states = list_nodes(settings, kind="beat")
    started = states[0] if states else None
    running = pid_running(started.pid, started.create_time) if started else None
    info: dict[str, Any] = {"started_by_carsctl": started is not None, "pid": started.pid if started else None,
                            "process_running": running, "heartbeat": None, "last_tick": None}
    if heartbeat:
        from cars_bot.beat import heartbeat_age, stale_after

        tick = _parse_time(heartbeat.get("tick_at"))
        age = heartbeat_age(heartbeat)
        info.update({"heartbeat": heartbeat, "last_tick": tick,
                     "tick_age_s": round(age, 1) if age is not None else None,
                     "pid": heartbeat.get("pid") or info["pid"], "host": heartbeat.get("hostname")})
        info["state"] = "alive" if age is not None and age <= stale_after(heartbeat) else "not ticking"
    elif running:
        info["state"] = "running, no heartbeat yet"
    else:
        info["state"] = "not running" if started else "not seen"
    return info


def read_beat_heartbeat(app: Celery) -> dict[str, Any] | None:
    """Beat's heartbeat from the broker's Redis, or None (no heartbeat, or no such module yet)."""
    try:
        from cars_bot.beat import read_heartbeat
    except ImportError:
        return None
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return read_heartbeat(client) if client is not None else None
    except Exception:  # noqa: BLE001 - a heartbeat that cannot be read is a heartbeat not seen
        return None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def monitor_status(settings: Settings) -> dict[str, Any]:
    """The Telegram monitor service: not configured until something registers it in carsctl's state."""
    from carsctl.cluster.remote_control import pid_running
    from carsctl.process.nodes import list_nodes

    states = list_nodes(settings, kind="monitor")
    if not states:
        return {"state": "not configured", "started_by_carsctl": False}
    state = states[0]
    running = pid_running(state.pid, state.create_time)
    return {"state": "running" if running else "not running", "pid": state.pid, "started_by_carsctl": True}


def _node_problems(report: dict[str, Any]) -> list[str]:
    problems = []
    for row in report["nodes"]:
        if row.get("started_by_carsctl") and row["state"] in ("not running", "silent"):
            problems.append(f"worker {row['node']}: {row['state']}")
        elif row["state"] == "silent":
            problems.append(f"worker {row['node']}: silent")
    beat = report["beat"]
    if beat.get("state") == "not ticking":
        problems.append(f"beat: alive but not ticking (last tick {beat.get('tick_age_s')}s ago)")
    elif beat.get("started_by_carsctl") and beat.get("state") == "not running":
        problems.append("beat: not running")
    if report["monitor"].get("started_by_carsctl") and report["monitor"]["state"] != "running":
        problems.append("monitor: not running")
    return problems


def schedule_entries(app: Celery, settings: Settings) -> dict[str, Any]:
    """The beat schedule with last and next run times.

    Times come from beat's heartbeat when beat runs; otherwise the next run of a crontab entry is
    computed from the schedule, and an interval entry has none (it runs one interval after beat starts).
    """
    from celery.schedules import maybe_schedule

    from cars_bot.broker import describe_schedule, is_crontab
    from cars_bot.task_names import task_alias
    from carsctl.cluster.remote_control import connected

    with connected(app):  # last runs are in the broker: without it they would all read "never"
        pass
    beat = beat_status(app, settings)
    seen = (beat.get("heartbeat") or {}).get("entries") or {}
    now = datetime.now(UTC)
    rows = []
    for name, spec in (app.conf.beat_schedule or {}).items():
        schedule = maybe_schedule(spec["schedule"], app=app)
        entry = seen.get(name) or {}
        last, upcoming = _parse_time(entry.get("last_run_at")), _parse_time(entry.get("next_run_at"))
        source = "beat" if upcoming else "computed"
        if upcoming is None and (last is not None or is_crontab(schedule)):
            upcoming = now + schedule.remaining_estimate(last or now)
        route = app.amqp.router.route(dict(spec.get("options") or {}), spec["task"], (), {}, None)
        queue = route.get("queue")
        rows.append({"name": name, "task": spec["task"], "alias": task_alias(spec["task"]),
                     "schedule": describe_schedule(spec["schedule"]), "queue": getattr(queue, "name", queue),
                     "priority": route.get("priority"), "last_run_at": last, "next_run_at": upcoming,
                     "next_from": source if upcoming else None})
    return {"beat": {k: v for k, v in beat.items() if k != "heartbeat"}, "entries": rows}
