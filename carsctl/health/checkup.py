"""`carsctl doctor`: the misconfigurations behind the known Celery-on-Redis pitfalls, each with a fix.

Every check returns findings (check, level, message, fix); the level is ok, warning (works, but worth
knowing) or problem (something is wrong: the command exits 1). A check that cannot run (the
broker is down, say) says so instead of passing silently.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from carsctl.errors import CarsctlError

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings

MAX_CLOCK_SKEW_S = 2.0
PIDBOX_REPLY_PATTERN = "*.reply.celery.pidbox"
PIDBOX_KEYS_WARN = 20


class Level(StrEnum):
    """How bad a finding is; only a problem fails `doctor`."""

    OK = "ok"
    WARNING = "warning"       # works, but worth knowing (an integration not configured, no worker running)
    PROBLEM = "problem"       # something is wrong: `doctor` exits 1


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was checked, how it went, and the fix when it is not ok."""

    check: str
    level: Level
    message: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class FindingCounts:
    """How many findings of each level."""

    ok: int
    warning: int
    problem: int


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Every finding, the counts per level, and whether the whole is healthy (no problem)."""

    findings: list[Finding]
    counts: FindingCounts
    healthy: bool


def run_checks(app: Celery, settings: Settings, timeout: float = 1.0) -> DoctorReport:
    """Every check; the broker-side ones are skipped (and said so) when the broker is unreachable."""
    findings = check_broker(settings)
    broker_ok = findings[0].level == Level.OK
    findings += check_database(settings)
    findings += check_configuration(app, settings)
    checks: list[Callable[[], list[Finding]]] = [
        lambda: check_workers_and_clocks(app, settings, timeout),
        lambda: check_beats(app, settings),
        lambda: check_pidbox_keys(app),
        lambda: check_queue_consumers(app, settings, timeout),
    ]
    for check in checks:
        if broker_ok:
            findings += check()
    if not broker_ok:
        findings.append(Finding("workers", Level.WARNING, "not checked: the broker is unreachable"))
    findings += check_log_dir(settings)
    findings += check_private_files(settings)
    findings += check_integrations(settings)
    findings += check_monitor(settings)
    findings += check_openai(settings)
    findings += check_sessions(settings)
    counts = FindingCounts(**{level.value: sum(1 for f in findings if f.level == level) for level in Level})
    return DoctorReport(findings=findings, counts=counts, healthy=counts.problem == 0)


def check_broker(settings: Settings) -> list[Finding]:
    """Reachable, and which Redis; every broker-side check depends on this one."""
    from carsctl.health.connectivity import check_broker as ping

    try:
        info = ping(settings)
    except CarsctlError as error:
        return [Finding("broker", Level.PROBLEM, error.message, error.hint)]
    version = f"Redis {info.version}, {info.used_memory} used" if info.version else info.kind
    return [Finding("broker", Level.OK, f"reachable at {info.url} ({version})")]


def check_database(settings: Settings) -> list[Finding]:
    """Reachable, and no migration pending."""
    from carsctl.health.connectivity import check_database as connect

    try:
        state = connect(settings)
    except CarsctlError as error:
        return [Finding("database", Level.PROBLEM, error.message, error.hint)]
    if not state.up_to_date:
        return [Finding("database", Level.PROBLEM, f"migrations pending (at {state.current or 'none'}, head "
                                             f"{state.head})", "carsctl db upgrade")]
    return [Finding("database", Level.OK, f"reachable at {state.url}, schema at {state.head}")]


def _tasks(app: Celery) -> dict[str, Any]:
    try:
        from carsctl.dispatch.task_catalog import load_tasks

        return load_tasks(app)
    except Exception:  # noqa: BLE001 - a broken task module must not stop the other checks
        return {}


def check_configuration(app: Celery, settings: Settings) -> list[Finding]:
    """Visibility timeout vs limits and countdowns, result expiry, acks_late without reject-on-lost."""
    from cars_bot.broker_urls import is_redis_url

    conf = app.conf
    tasks = _tasks(app)
    results = []
    acks_late = [name for name, t in tasks.items() if t.acks_late] or (["(default)"] if conf.task_acks_late else [])
    options = conf.broker_transport_options or {}
    if is_redis_url(settings.broker_url):
        # A message delivered to a worker and not acked within the visibility timeout is delivered
        # again: an ETA/countdown task waits unacked in the worker, and with acks_late so does a running one.
        visibility = float(options.get("visibility_timeout", 3600))
        longest: dict[str, float] = {}
        if acks_late:
            longest["the hard time limit"] = float(conf.task_time_limit or 0)
            longest.update({f"{name}'s time limit": float(t.time_limit) for name, t in tasks.items() if t.time_limit})
        countdown = _max_countdown()
        if countdown:
            longest["the longest retry countdown"] = countdown
        what, seconds = max(longest.items(), key=lambda item: item[1], default=("nothing", 0.0))
        if seconds >= visibility:
            results.append(Finding(
                "visibility timeout", Level.PROBLEM,
                f"visibility_timeout {visibility:g}s is not longer than {what} ({seconds:g}s): such a task is "
                "delivered again while it waits or runs, and runs twice",
                f"raise broker_transport_options['visibility_timeout'] above {seconds:g}s (cars_bot/celery_app.py)"))
        else:
            results.append(Finding("visibility timeout", Level.OK,
                                   f"{visibility:g}s, longer than {what} ({seconds:g}s)"))
    expires = conf.result_expires
    seconds = expires.total_seconds() if hasattr(expires, "total_seconds") else expires
    if not seconds:
        results.append(Finding("result expiry", Level.PROBLEM, "result_expires is unset: result keys never expire "
                               "and fill Redis", "set RESULT_EXPIRES=86400 (seconds)"))
    else:
        results.append(Finding("result expiry", Level.OK, f"results expire after {seconds:g}s"))
    default_reject = bool(conf.task_reject_on_worker_lost)
    unsafe = [name for name, t in tasks.items() if t.acks_late
              and not (default_reject if t.reject_on_worker_lost is None else t.reject_on_worker_lost)]
    if not tasks and conf.task_acks_late and not default_reject:
        unsafe = ["(default)"]
    if unsafe:
        results.append(Finding("acks late", Level.PROBLEM,
                               f"acks_late without reject_on_worker_lost: {', '.join(unsafe)} "
                               "are acknowledged when their worker process dies, and lost",
                               "set task_reject_on_worker_lost=True in cars_bot/celery_app.py"))
    elif acks_late:
        results.append(Finding("acks late", Level.OK,
                               "acks_late with reject_on_worker_lost: a killed task is re-queued"))
    return results


def _max_countdown() -> float | None:
    try:
        from cars_bot.celery_app import MAX_COUNTDOWN
    except ImportError:
        return None
    return float(MAX_COUNTDOWN)


def check_workers_and_clocks(app: Celery, settings: Settings, timeout: float) -> list[Finding]:
    """Workers that answer, ETA tasks beyond the visibility timeout, and clock skew between hosts."""
    from carsctl.cluster.remote_control import broadcast, task_rows

    ping = broadcast(app, "ping", timeout=timeout, settings=settings)
    if not ping.replies:
        message = "no worker is running" + (f" (not running: {', '.join(ping.not_running)})" if ping.not_running
                                             else "")
        return [Finding("workers", Level.WARNING, message, "carsctl worker start")]
    results = [Finding("workers", Level.OK, f"{len(ping.replies)} answered: {', '.join(sorted(ping.replies))}")]
    if ping.silent or ping.silent_unnamed:
        silent = ping.silent + ([f"{ping.silent_unnamed} unnamed"] if ping.silent_unnamed else [])
        results.append(Finding("workers", Level.PROBLEM, f"silent for {timeout:g}s: {', '.join(silent)}",
                               "look at `carsctl logs NODE`; restart it with `carsctl worker restart NODE`"))
    visibility = float((app.conf.broker_transport_options or {}).get("visibility_timeout", 3600))
    scheduled = broadcast(app, "scheduled", {"safe": True}, destination=sorted(ping.replies), timeout=timeout)
    late = [row for row in task_rows(scheduled) if _seconds_until(row.eta) > visibility]
    if late:
        results.append(Finding("countdowns", Level.PROBLEM,
                               f"{len(late)} scheduled task(s) are due after the visibility "
                               f"timeout ({visibility:g}s) and will be delivered twice",
                               "revoke them (`carsctl task revoke ID`) and re-send with a shorter countdown"))
    results += clock_skew(app, len(ping.replies), timeout)
    return results


def _seconds_until(eta: Any) -> float:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(str(eta))
    except ValueError:
        return 0.0
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


def clock_skew(app: Celery, expected: int, timeout: float) -> list[Finding]:
    """Each worker's clock against this host's: ask for a heartbeat event and compare its timestamp."""
    from carsctl.cluster.remote_control import broadcast

    beats: dict[str, float] = {}
    with app.connection_for_read() as conn:
        def on_heartbeat(event: dict[str, Any]) -> None:
            beats[event["hostname"]] = event["local_received"] - event["timestamp"]

        receiver = app.events.Receiver(conn, handlers={"worker-heartbeat": on_heartbeat},
                                       routing_key="worker.heartbeat")
        deadline = time.monotonic() + timeout
        woken = False
        try:
            # The Redis transport subscribes on the first drain, so the workers are asked for a
            # heartbeat only then (receiver's own wakeup comes too early and the replies are lost).
            for _ in receiver.itercapture(timeout=timeout, wakeup=False):
                if not woken:
                    broadcast(app, "heartbeat", reply=False)
                    woken = True
                if len(beats) >= expected or time.monotonic() > deadline:
                    break
        except TimeoutError:
            pass
    if not beats:
        return [Finding("clock skew", Level.WARNING, "no heartbeat received: cannot compare clocks",
                        "start workers with events enabled (the default)")]
    skewed = {node: skew for node, skew in beats.items() if abs(skew) > MAX_CLOCK_SKEW_S}
    if skewed:
        detail = ", ".join(f"{node} {'behind' if s > 0 else 'ahead'} by {abs(s):.1f}s" for node, s in skewed.items())
        return [Finding("clock skew", Level.PROBLEM, f"worker clocks differ from this host's: {detail} (ETA tasks run "
                        "early or late)", "enable time synchronisation on every host: timedatectl set-ntp true")]
    worst = max(abs(s) for s in beats.values())
    return [Finding("clock skew", Level.OK, f"{len(beats)} worker clock(s) within {worst:.2f}s of this host")]


def check_beats(app: Celery, settings: Settings) -> list[Finding]:
    """More than one beat on this broker sends every periodic task more than once."""
    from carsctl.health.overview import beat_info

    local = local_beats(settings.broker_url)
    heartbeat = beat_info(app, settings).heartbeat
    elsewhere = heartbeat.pid if heartbeat and heartbeat.hostname not in (None, socket.gethostname()) else None
    count = len(local) + (1 if elsewhere else 0)
    if count > 1:
        where = [f"pid {pid} here" for pid in local] + ([f"pid {elsewhere} on {heartbeat.hostname}"]
                                                         if elsewhere else [])
        return [Finding("beat", Level.PROBLEM,
                        f"{count} beats on this broker ({', '.join(where)}): every periodic task "
                        "is sent more than once", "keep one: `carsctl beat stop`, then kill the others")]
    if count == 0:
        return [Finding("beat", Level.WARNING, "no beat is running: periodic tasks are not sent", "carsctl beat start")]
    return [Finding("beat", Level.OK, "one beat running")]


def local_beats(broker_url: str) -> list[int]:
    """Pids of `celery ... beat` processes on this host that use `broker_url` (judged by their environment)."""
    from pathlib import Path

    import psutil

    from cars_bot.config import ConfigError, load_settings

    pids = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if "beat" not in cmdline or not any("celery" in part for part in cmdline):
            continue
        try:
            theirs = load_settings(process.environ(), Path(process.cwd())).broker_url
        except (psutil.Error, ConfigError, OSError):
            theirs = broker_url  # cannot tell: count it rather than miss a duplicate
        if theirs == broker_url:
            pids.append(process.info["pid"])
    return pids


def check_pidbox_keys(app: Celery) -> list[Finding]:
    """Remote-control reply lists without a TTL pile up in Redis (celery#6089)."""
    with app.connection_for_read() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is None:
            return []
        stale = sum(1 for key in client.scan_iter(match=PIDBOX_REPLY_PATTERN, count=500) if client.ttl(key) == -1)
    if stale >= PIDBOX_KEYS_WARN:
        return [Finding("pidbox replies", Level.PROBLEM, f"{stale} remote-control reply keys without a TTL",
                        "carsctl task run cleanup-old-results (gives them a TTL)")]
    return [Finding("pidbox replies", Level.OK, f"{stale} reply key(s) without a TTL")]


def check_queue_consumers(app: Celery, settings: Settings, timeout: float) -> list[Finding]:
    """A queue whose messages no running worker consumes: they wait forever, and nothing else says so."""
    from cars_bot.broker import queue_depths
    from carsctl.cluster.queue_ops import queue_consumers, queue_row, unconsumed

    rows = [queue_row(name, depth) for name, depth in queue_depths(app).items()]
    consumers = queue_consumers(app, timeout=timeout, settings=settings)
    starved = unconsumed(rows, consumers, any_worker=bool(consumers))
    if not starved:
        waiting = sum(row.ready for row in rows)
        return [Finding("queue consumers", Level.OK, f"every queue with messages has a consumer ({waiting} waiting)")]
    return [Finding("queue consumers", Level.PROBLEM,
                    f"{q.queue}: {q.ready} message(s) waiting and no worker consumes it",
                    f"start a worker consuming {q.queue}: {q.fix}") for q in starved]


def check_log_dir(settings: Settings) -> list[Finding]:
    """The log directory is writable, or can be created: a worker started with a log file needs it."""
    directory = settings.log_dir
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Finding("log directory", Level.PROBLEM,
                        f"{directory} is not writable: workers cannot start with a log file",
                        f"mkdir -p {directory} && chown $USER {directory}, or set LOG_DIR")]
    state = "writable" if existing == directory else "will be created"
    return [Finding("log directory", Level.OK, f"{directory} {state}")]


def check_private_files(settings: Settings) -> list[Finding]:
    """`.env` (the secrets) and the state directory (queue copy, database) are not readable by others."""
    from cars_bot.private_files import readable_by_others

    findings = []
    dotenv = settings.cwd / ".env"
    if readable_by_others(dotenv):
        findings.append(Finding(".env", Level.WARNING, f"{dotenv} is readable by other users (it holds the secrets)",
                                f"chmod 600 {dotenv}"))
    elif dotenv.exists():
        findings.append(Finding(".env", Level.OK, f"{dotenv} readable by its owner only"))
    if settings.home.exists() and readable_by_others(settings.home):
        findings.append(Finding("state directory", Level.WARNING,
                                f"{settings.home} is readable by other users (queue copy, database, outbox)",
                                f"chmod -R go-rwx {settings.home}"))
    return findings


def check_integrations(settings: Settings) -> list[Finding]:
    """OpenAI, Telegram, Sheets: not configured is a warning (an offline stand-in is used), not a problem."""
    offline = {"openai": "the offline rules backend is used", "telegram": "posts go to the outbox",
               "sheets": "the local workbook is used"}
    results = []
    for name, state in settings.integrations().items():
        if state == "configured":
            results.append(Finding(name, Level.OK, "configured"))
        else:
            fix = state.removeprefix("not configured (").removesuffix(")")
            results.append(Finding(name, Level.WARNING, f"not configured: {offline.get(name, 'disabled')}", fix))
    return results


def check_monitor(settings: Settings) -> list[Finding]:
    """The monitor's own Telegram session: not configured is a warning (posts come only through
    `carsctl post add|import`); the publisher's session reused is an error."""
    from cars_bot.monitor.client import NOT_CONFIGURED, session_problem

    problem = session_problem(settings)
    if problem is None:
        return [Finding("monitor", Level.OK, "configured (its own Telegram session)")]
    if problem == NOT_CONFIGURED:
        return [Finding("monitor", Level.WARNING, "not configured: posts come only through `carsctl post add|import`",
                        problem.removeprefix("not configured: "))]
    return [Finding("monitor", Level.PROBLEM, problem, "create a second session for the monitor's account")]
def check_openai(settings: Settings) -> list[Finding]:
    """With OpenAI configured: its recorded fallbacks (quota exhausted, model rejected, how many posts
    the rules analysed instead in the last hour)."""
    if not settings.openai_api_key:
        return []
    from cars_bot.ai.failures import FallbackReason
    from cars_bot.ai.fallbacks import openai_health
    from cars_bot.db.session import session_factory

    try:
        with session_factory(settings.database_url)() as session:
            health = openai_health(session)
    except Exception as error:  # noqa: BLE001 - check_database reports an unusable database
        return [Finding("openai fallbacks", Level.WARNING, f"not checked: {type(error).__name__}")]
    fixes = {FallbackReason.QUOTA_EXHAUSTED: "add credit to the OpenAI account (or raise its limit)",
             FallbackReason.MODEL_REJECTED: f"set OPENAI_MODEL to a model this key can use (now "
                                            f"{settings.openai_model!r})"}
    lines = health.lines()
    if not lines:
        return [Finding("openai fallbacks", Level.OK, "no fallback to the rules since OpenAI last answered")]
    level = Level.PROBLEM if health.failing_reason is not None else Level.WARNING
    fix = fixes.get(health.failing_reason) if health.failing_reason else None
    return [Finding("openai fallbacks", level, "; ".join(lines), fix)]
def check_sessions(settings: Settings) -> list[Finding]:
    """Telegram session strings that are set: a malformed one fails every post (checked offline)."""
    from cars_bot.publishing.telegram import session_states

    results = []
    for name, state in session_states(settings).items():
        if state == "valid":
            results.append(Finding(name, Level.OK, "valid"))
        else:
            results.append(Finding(name, Level.PROBLEM, state,
                                   "create the session again (a telethon StringSession) and set it"))
    return results
