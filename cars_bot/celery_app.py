"""The Celery application, configured as the seed describes (tasks-README "Конфигурация").

Broker and result backend: Redis (`REDIS_URL`; `CELERY_BROKER_URL` / `CELERY_RESULT_BACKEND` override
each; unset means the embedded Redis that `carsctl broker start` runs on a unix socket). JSON only,
UTC, hard limit 30 min, soft 25 min, prefetch 2, 100 tasks per child, five queues, seven periodic tasks.

The seed's own commands work against this module unchanged:
`celery -A cars_bot.celery_app worker -l info -c 4`, `celery -A cars_bot.celery_app beat -l info`,
`celery -A cars_bot.celery_app inspect active`, `celery -A cars_bot.celery_app flower`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Exchange, Queue

from cars_bot.broker import (
    MAX_PRIORITY,
    PRIORITY_SEP,
    PRIORITY_STEPS,
    TRANSPORT_PATH,
    register_socket_scheme,
)
from cars_bot.broker_urls import is_redis_url, kombu_broker_url
from cars_bot.config import QUEUES, Settings, get_settings

HARD_TIME_LIMIT = 30 * 60
SOFT_TIME_LIMIT = 25 * 60
# The longest delay this project puts on a message: retry backoff is capped at 10 min and a
# Telegram FloodWait or OpenAI Retry-After countdown is capped at 1 h (cars_bot.tasks.base).
MAX_COUNTDOWN = 60 * 60
# With acks_late, Redis re-delivers a message that is not acked within the visibility timeout. It must
# be longer than the hard time limit (30 min) AND the longest countdown/ETA (1 h), or a slow or delayed
# task would run twice (celery#2599, kombu#337). 2 h covers both with margin, and a worker killed
# without a warm shutdown still gets its messages back the same day, not after the 12 h of the prior system.
VISIBILITY_TIMEOUT = 2 * 60 * 60
#: Seconds a Redis connection may sit idle before redis-py PINGs it before use; kombu also drops a
#: BRPOP connection whose reply is this much overdue (a half-open socket after a broker failover).
HEALTH_CHECK_INTERVAL = 25

#: Queue -> default priority of its tasks (the seed's table; its 10 is clamped to 9, the most urgent).
QUEUE_PRIORITY: dict[str, int] = {
    "default": 5,
    "ai_processing": 9,
    "publishing": 5,
    "sheets_sync": 3,
    "monitoring": 3,
}

#: Task module -> queue. Every task name keeps its module path: cars_bot.tasks.<module>.<name>_task.
MODULE_QUEUE: dict[str, str] = {
    "cars_bot.tasks.ai_tasks": "ai_processing",
    "cars_bot.tasks.publishing_tasks": "publishing",
    "cars_bot.tasks.sheets_tasks": "sheets_sync",
    "cars_bot.tasks.monitoring_tasks": "monitoring",
}

#: Tasks more urgent than their queue's default ("critical tasks (user interactions) have the highest").
TASK_PRIORITY: dict[str, int] = {
    "cars_bot.tasks.publishing_tasks.send_contact_info_task": MAX_PRIORITY,
}

#: Every periodic task expires after at most its period (`options.expires`, seconds): after a worker
#: outage or a Sheets 429 episode the backlog is dropped instead of running in a burst, and a retry
#: is never scheduled past the next run (cars_bot.tasks.base).
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "sync-channels-every-minute": {
        "task": "cars_bot.tasks.sheets_tasks.sync_channels_task",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "sync-subscribers-every-5-minutes": {
        "task": "cars_bot.tasks.sheets_tasks.sync_subscribers_task",
        "schedule": 5 * 60.0,
        "options": {"expires": 5 * 60.0},
    },
    "update-analytics-hourly": {
        "task": "cars_bot.tasks.sheets_tasks.update_analytics_task",
        "schedule": crontab(minute=0),
        "options": {"expires": 60 * 60.0},
    },
    "check-subscriptions-daily": {
        "task": "cars_bot.tasks.monitoring_tasks.check_subscriptions_task",
        "schedule": crontab(hour=0, minute=0),
        "options": {"expires": 24 * 60 * 60.0},
    },
    "collect-stats-every-15-minutes": {
        "task": "cars_bot.tasks.monitoring_tasks.collect_stats_task",
        "schedule": 15 * 60.0,
        "options": {"expires": 15 * 60.0},
    },
    "cleanup-old-results-daily": {
        "task": "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 24 * 60 * 60.0},
    },
    # The safety net (cars_bot.maintenance.RECOVERY_INTERVAL): a run that missed its slot is dropped.
    "recover-lost-work-every-2-minutes": {
        "task": "cars_bot.tasks.monitoring_tasks.recover_lost_work_task",
        "schedule": 2 * 60.0,
        "options": {"expires": 2 * 60.0},
    },
}


def route_task(name: str, args: Any = None, kwargs: Any = None, options: Any = None,
               task: Any = None, **_: Any) -> dict[str, Any]:
    """Route a task by its name: the module picks the queue, the queue (or task) the priority."""
    module = name.rsplit(".", 1)[0]
    queue = MODULE_QUEUE.get(module, "default")
    return {"queue": queue, "priority": TASK_PRIORITY.get(name, QUEUE_PRIORITY[queue])}


def _is_tcp(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def celery_config(settings: Settings) -> dict[str, Any]:
    """The whole Celery configuration for `settings` (a plain dict, so tests and doctor can read it)."""
    broker_url = settings.broker_url
    redis_broker = is_redis_url(broker_url)
    backend_url = settings.result_backend_url
    timeout = settings.broker_connect_timeout
    config: dict[str, Any] = {
        "broker_url": kombu_broker_url(broker_url) if redis_broker else broker_url,
        "result_backend": backend_url,
        # serialization, time
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # limits, prefetch, recycling
        "task_time_limit": HARD_TIME_LIMIT,
        "task_soft_time_limit": SOFT_TIME_LIMIT,
        "worker_prefetch_multiplier": 2,
        "worker_max_tasks_per_child": 100,
        # reliability: a task is acked after it ran, and re-queued if its worker process dies
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # results expire (celery#7801: keys without TTL fill Redis)
        "result_expires": settings.result_expires,
        "result_extended": True,
        # events for Flower and carsctl
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # queues and routing
        "task_queues": [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        "task_default_queue": "default",
        "task_default_exchange": "default",
        "task_default_routing_key": "default",
        "task_routes": (route_task,),
        # No task_default_priority: a task's own default would override its route's priority in
        # apply_async. Every message gets one from route_task (queue default, or the task's own).
        "task_inherit_parent_priority": False,
        # a command-line call must fail fast when the broker is down, not retry for minutes
        "broker_connection_timeout": timeout,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1,
        },
        # Redis connections never wait forever on a dead peer (kombu: a publish would hang): connect and
        # read/write timeouts, keepalive, and a PING before reusing a connection idle for 25 s.
        "redis_socket_connect_timeout": timeout,
        "redis_socket_timeout": settings.broker_socket_timeout,
        "redis_socket_keepalive": _is_tcp(backend_url),  # redis-py refuses it for a unix socket
        "redis_backend_health_check_interval": HEALTH_CHECK_INTERVAL,
        "redis_retry_on_timeout": True,
        "result_backend_transport_options": {"retry_policy": {"timeout": timeout, "max_retries": 2}},
        # beat
        "beat_schedule": BEAT_SCHEDULE,
        "beat_schedule_filename": str(settings.home / "celerybeat-schedule"),
        "beat_max_loop_interval": 30,
        "beat_scheduler": "cars_bot.beat:LockedScheduler",
    }
    if redis_broker:
        register_socket_scheme()  # `celery report` / `inspect conf` parse the URL without the transport
        config["broker_transport"] = TRANSPORT_PATH
        config["broker_transport_options"] = {
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEP,
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_connect_timeout": timeout,
            # Above kombu's BRPOP wait (1 s, `brpop_timeout`), or every idle blocking read would time out.
            "socket_timeout": settings.broker_socket_timeout,
            "socket_keepalive": _is_tcp(broker_url),
            "health_check_interval": HEALTH_CHECK_INTERVAL,
            "max_connections": 20,
        }
    else:
        # RabbitMQ serves higher numbers first natively; declare the queues as priority queues.
        config["task_queue_max_priority"] = MAX_PRIORITY
    return config


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for `settings` (the module-level `app` uses the process settings)."""
    settings = settings or get_settings()
    application = Celery("cars_bot", set_as_current=False)
    application.config_from_object(celery_config(settings))
    application.conf.include = [
        "cars_bot.tasks.ai_tasks",
        "cars_bot.tasks.publishing_tasks",
        "cars_bot.tasks.sheets_tasks",
        "cars_bot.tasks.monitoring_tasks",
    ]
    return application


app = create_app()
app.set_current()
app.set_default()
celery_app = app  # the prior system's alias


class SecretMaskingFilter(logging.Filter):
    """Masks configured secrets and URL passwords in every record a worker or beat logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from cars_bot.secret_masking import mask_secrets_in

        message = record.getMessage()
        masked = mask_secrets_in(message, get_settings())
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            masked_exc = mask_secrets_in(text, get_settings())
            if masked_exc != text:
                record.exc_info, record.exc_text = None, masked_exc
        return True


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _mask_secrets_in_logs(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
            handler.addFilter(SecretMaskingFilter())


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    logging.getLogger("cars_bot").critical("uncaught %s: the process stops", exc_type.__name__,
                                           exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: Any) -> None:
    if args.exc_type is not SystemExit:
        logging.getLogger("cars_bot").critical("uncaught %s in thread %s", args.exc_type.__name__,
                                               getattr(args.thread, "name", "?"),
                                               exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_unraisable(unraisable: Any) -> None:
    logging.getLogger("cars_bot").error("%s: %r", unraisable.err_msg or "exception ignored", unraisable.object,
                                        exc_info=(unraisable.exc_type, unraisable.exc_value,
                                                  unraisable.exc_traceback))


@signals.after_setup_logger.connect
def _tracebacks_as_one_record(**_: Any) -> None:
    """An uncaught exception is logged as one record, with its traceback.

    Celery redirects stdout/stderr to the log (`worker_redirect_stdouts`), one record per `write`; the
    interpreter's own traceback printer writes a traceback piece by piece (a file name, a line number,
    every `^` of its marker line), so a crash became thousands of one-token records. These hooks hand
    the exception to logging instead, before anything is printed.
    """
    import sys
    import threading

    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable
@signals.after_setup_logger.connect
def _log_to_sheets(logger: logging.Logger, **_: Any) -> None:
    """LOG_TO_SHEETS=on: warnings and errors also go to the sheet "Логи", batched, never blocking."""
    from cars_bot.sheets.log_handler import install

    install(logger, "worker")


@signals.worker_init.connect
def _preload_domain_modules(**_: Any) -> None:
    """Import the heavy domain modules once, in the worker's main process, before the pool forks.

    Pool processes are recycled every 100 tasks (the seed's max tasks per child); each new one then
    starts with the rules backend's compiled patterns, the models and the publishing code already
    loaded instead of paying for them on its first task.
    """
    import cars_bot.ai.pipeline
    import cars_bot.ai.rules
    import cars_bot.maintenance
    import cars_bot.publishing.contacts
    import cars_bot.publishing.outbox
    import cars_bot.publishing.publication  # noqa: F401


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    """A forked pool process must not reuse the parent's database connections."""
    from cars_bot.db.session import dispose_engines

    dispose_engines()
