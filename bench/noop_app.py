"""A Celery app with the project's exact configuration plus one no-op task with the same base class as
the project's tasks (results stored, started state tracked, events sent): the reference for the pipeline
benchmark, i.e. what Celery itself costs per task on this machine, in the same run."""

from celery import Celery

from cars_bot.celery_app import celery_config
from cars_bot.config import get_settings
from cars_bot.tasks.base import CarsTask

app = Celery("bench_noop", set_as_current=False)
app.config_from_object(celery_config(get_settings()))
app.conf.beat_schedule = {}


@app.task(name="bench.noop", base=CarsTask)
def noop(i: int) -> None:
    return None
