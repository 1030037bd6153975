"""A Celery app with the project's exact configuration plus one no-op task: the reference for the
pipeline benchmark (what Celery itself costs per task on this machine, in the same run)."""

from celery import Celery

from cars_bot.celery_app import celery_config
from cars_bot.config import get_settings

app = Celery("bench_noop", set_as_current=False)
app.config_from_object(celery_config(get_settings()))
app.conf.beat_schedule = {}


@app.task(name="bench.noop", ignore_result=True)
def noop(i: int) -> None:
    return None
