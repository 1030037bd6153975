"""The project's Celery tasks, importable as the seed shows: `from cars_bot.tasks import process_post_task`.

| module | queue | tasks |
|---|---|---|
| ai_tasks | ai_processing | process_post_task, classify_post_task, extract_data_task, generate_description_task |
| publishing_tasks | publishing | publish_post_task, send_contact_info_task |
| sheets_tasks | sheets_sync | sync_channels_task, sync_subscribers_task, update_analytics_task |
| monitoring_tasks | monitoring | check_subscriptions_task, collect_stats_task, cleanup_old_results_task |
"""

from cars_bot.tasks.ai_tasks import (
    classify_post_task,
    extract_data_task,
    generate_description_task,
    process_post_task,
)
from cars_bot.tasks.monitoring_tasks import (
    check_subscriptions_task,
    cleanup_old_results_task,
    collect_stats_task,
)
from cars_bot.tasks.publishing_tasks import publish_post_task, send_contact_info_task
from cars_bot.tasks.sheets_tasks import sync_channels_task, sync_subscribers_task, update_analytics_task

__all__ = [
    "check_subscriptions_task",
    "classify_post_task",
    "cleanup_old_results_task",
    "collect_stats_task",
    "extract_data_task",
    "generate_description_task",
    "process_post_task",
    "publish_post_task",
    "send_contact_info_task",
    "sync_channels_task",
    "sync_subscribers_task",
    "update_analytics_task",
]
