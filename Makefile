# The seed's make targets (tasks-README), each one carsctl command: make run-celery-worker, make celery-status.
# CARSCTL names the command (e.g. make CARSCTL="python -m carsctl" ...); *_ARGS pass options through,
# e.g. make run-celery-worker WORKER_ARGS="ai -Q ai_processing -c 2". celery-purge asks before deleting
# (carsctl's confirmation; without a terminal it refuses): make celery-purge PURGE_ARGS=--yes to skip it.

CARSCTL ?= carsctl
WORKER_ARGS ?=
BEAT_ARGS ?=
PURGE_ARGS ?=

.PHONY: run-celery-worker run-celery-beat stop-celery celery-status celery-stats celery-purge

run-celery-worker:  ## start the worker node(s) detached; returns once they answer
	$(CARSCTL) worker start $(WORKER_ARGS)

run-celery-beat:  ## start beat detached; returns once it ticks
	$(CARSCTL) beat start $(BEAT_ARGS)

stop-celery:  ## stop every worker node and beat (warm: running tasks finish); both, whatever the first says
	$(CARSCTL) worker stop; worker=$$?; $(CARSCTL) beat stop; beat=$$?; exit $$((worker > beat ? worker : beat))

celery-status:  ## broker, database, workers, beat, queues; exit 1 when something is wrong
	$(CARSCTL) status

celery-stats:  ## per worker: pool, tasks processed, uptime, memory
	$(CARSCTL) inspect stats

celery-purge:  ## delete the queued tasks, after asking
	$(CARSCTL) purge $(PURGE_ARGS)
