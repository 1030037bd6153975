"""`carsctl queues` and `carsctl purge`: queue depth counted correctly, and a purge that tells the truth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from carsctl.context import CliContext, obj
from carsctl.options import JsonOpt, QueuesOpt, ReplyTimeoutOpt, YesOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from carsctl.cluster.queue_ops import PurgeResult, QueueReport

IncludeUnackedOpt = Annotated[bool, typer.Option(
    "--include-unacked", help="Also remove the messages workers hold unacknowledged, and revoke them so live "
                              "workers drop what they prefetched.")]


def queues(ctx: typer.Context, queue: QueuesOpt = None, timeout: ReplyTimeoutOpt = 1.0, json: JsonOpt = False) -> None:
    """Messages per queue: ready (every priority level counted), unacked (held by workers), scheduled (ETA).

    Unacked messages were delivered to a worker (prefetched, waiting for their ETA, or running) and
    come back to the queue if that worker dies; the ETA ones are a part of them.

    \b
    Example: carsctl queues --json | jq '.totals.ready'
    """
    from carsctl.cluster import queue_ops as service

    cli = obj(ctx)
    report = service.depths(cli.celery_app, queue, settings=cli.settings, timeout=timeout)
    if json or cli.json:
        cli.emit_json(report)
        return
    from carsctl.render import queue_table

    cli.out.print(queue_table("Queues", report.queues, report.totals))
    if not report.workers.replied:
        cli.info("no worker replied: ETA tasks held by workers are not counted")


def purge(ctx: typer.Context, queue: QueuesOpt = None, yes: YesOpt = False,
          include_unacked: IncludeUnackedOpt = False, json: JsonOpt = False) -> None:
    """Delete the waiting messages of all (or -Q) queues, every priority level; asks first.

    Without --yes and without a terminal it refuses (exit 2).

    \b
    Example: carsctl purge -Q ai_processing --yes
    """
    from carsctl.cluster import queue_ops as service

    cli = obj(ctx)
    app = cli.celery_app
    plan = service.depths(app, queue, with_scheduled=False)
    _show_plan(cli, plan, include_unacked, json or cli.json)
    doomed = plan.totals.ready + (plan.totals.unacked if include_unacked else 0)
    if doomed and not yes:
        cli.confirm_or_refuse(f"Purge {doomed} message(s)?", "purge")
    result = service.purge(app, queue, include_unacked=include_unacked, settings=cli.settings)
    if json or cli.json:
        cli.emit_json(result)
    else:
        cli.info(safe(_summary(result)))


def _show_plan(cli: CliContext, plan: QueueReport, include_unacked: bool, as_json: bool) -> None:
    """What will be deleted, per queue and priority level, and what a broker purge cannot reach."""
    if not as_json and cli.verbosity >= 0:
        from carsctl.render import queue_table

        cli.err.print(queue_table("To be purged", plan.queues, plan.totals))
    if plan.totals.unacked and not include_unacked:
        cli.info(f"warning: {plan.totals.unacked} message(s) held unacknowledged by workers (prefetched, "
                 "waiting for an ETA, running, or of a killed worker) survive a broker purge; "
                 "add --include-unacked to remove them too")


def _summary(result: PurgeResult) -> str:
    from carsctl.render import plural

    text = f"Purged {plural(result.total, 'message')} from {plural(result.queues_touched, 'queue')}"
    removed = sum(result.unacked_removed.values())
    if removed:
        text += f" ({removed} of them unacknowledged)"
    if result.revoked_task_ids:
        workers = plural(len(result.revoked_by), "worker")
        text += f"; revoked {plural(result.revoked_task_ids, 'task')} on {workers}"
    return text
