"""`carsctl task`: list, run (one or many), result, revoke, and the failed-task registry (failed, retry)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from carsctl.context import CliContext, obj
from carsctl.errors import EXIT_FAILED, OperationFailed, UsageError
from carsctl.options import JsonOpt, QueueOpt, YesOpt
from carsctl.render import safe

if TYPE_CHECKING:
    from carsctl.dispatch.arguments import SendOptions
    from carsctl.dispatch.task_results import RevokeResult, TaskInfo

app = typer.Typer(help="Run tasks by hand, look at their results, revoke them, retry failed ones.",
                  no_args_is_help=True)

WaitTimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds --wait waits at most.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the result, showing the task's state.")]


@app.command("list")
def list_tasks(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every task: alias, queue, default priority, time limits, retries, periodic schedule.

    \b
    Example: carsctl task list
    """
    from carsctl.dispatch.task_catalog import task_catalog

    cli = obj(ctx)
    rows = task_catalog(cli.celery_app)
    if json or cli.json:
        cli.emit_json(rows)
        return
    from carsctl.render import limit, table

    cli.out.print(table("Tasks", ("Alias", "Arguments", "Queue", "Pri", "Limits", "Retries", "Periodic"), (
        (r.alias, r.signature.strip("()"), r.queue, r.priority, f"{limit(r.soft_time_limit)}/{limit(r.time_limit)}",
         r.max_retries, "\n".join(r.periodic)) for r in rows), no_wrap=("Alias",)))


@app.command("run", context_settings={"ignore_unknown_options": False})
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Alias (process-post) or full task name.")],
    args: Annotated[list[str] | None, typer.Argument(metavar="ARGS",
                                                     help="Positional arguments, converted to the task's types.")]
    = None,
    kwarg: Annotated[list[str] | None, typer.Option("--kwarg", "-k", metavar="KEY=VALUE",
                                                    help="KEY=VALUE (repeatable).")] = None,
    queue: QueueOpt = None,
    priority: Annotated[int | None, typer.Option("--priority", "-p", min=0, max=9, help="0-9, 9 most urgent.")]
    = None,
    countdown: Annotated[float | None, typer.Option("--countdown", min=0.0, max=315_360_000.0,
                                                                   help="Run in S seconds.")] = None,
    eta: Annotated[str | None, typer.Option("--eta", metavar="TIME",
                                            help="Run at this ISO time (no zone: local time).")] = None,
    wait: WaitOpt = False,
    timeout: WaitTimeoutOpt = 300.0,
    retry_policy: Annotated[str | None, typer.Option(
        "--retry-policy", metavar="POLICY",
        help="Publish retries: max_retries=5,interval_start=1,interval_step=2,interval_max=30")]
    = None,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", metavar="FILE",
        help="One task per line, its arguments on the line ('-' reads stdin); sent in one pipeline.")]
    = None,
    json: JsonOpt = False,
) -> None:
    """Send a task; its arguments are checked against its signature before anything is sent.

    A task about a post (process-post, publish-post) is sent only if the post exists. Exit code 0 sent
    (with --wait: succeeded), 1 no such post, the task failed, or it found its post gone.

    \b
    Example: carsctl task run process-post 42 --wait --timeout 300
    Example: carsctl task run process-post 42 --countdown 10 --priority 7
    Example: carsctl task run process-post --from-file ids.txt
    """
    from carsctl.dispatch.arguments import convert_arguments, send_options
    from carsctl.dispatch.sending import send
    from carsctl.dispatch.task_catalog import resolve_task

    cli = obj(ctx)
    app = cli.celery_app
    task = resolve_task(app, name)
    options = send_options(app, queue=queue, priority=priority, countdown=countdown, eta=eta,
                           retry_policy=retry_policy)
    if from_file is not None:
        _run_bulk(cli, task, from_file, args or [], kwarg or [], options, json)
        return
    call = convert_arguments(task, args or [], kwarg or [])
    sent = send(app, task, call.args, call.kwargs, options)
    cli.info(safe(f"sent {_label(task.name, sent.id)} to {sent.queue} (priority {sent.priority})"))
    if wait:
        _wait_and_show(cli, sent.id, timeout, json)
    elif json or cli.json:
        cli.emit_json(sent)
    else:
        print(sent.id)


def _alias(name: str) -> str:
    from cars_bot.task_names import task_alias

    return task_alias(name)


def _label(name: str, task_id: str) -> str:
    return f"{_alias(name)}[{task_id}]"


def _run_bulk(cli: CliContext, task: Any, source: str, args: list[str], kwargs: list[str],
              options: SendOptions, json: bool) -> None:
    import sys

    from carsctl.dispatch.arguments import convert_arguments, read_argument_lines
    from carsctl.dispatch.sending import send_bulk

    if args or kwargs:
        raise UsageError("give the arguments on the command line or in --from-file, not both")
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        text = data.decode("utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{source} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): "
                         "give one task's arguments per line") from None
    if "\x00" in text:
        raise UsageError(f"{source} is a binary file (it contains NUL bytes): give one task's arguments per line")
    arg_lists = []
    for number, raw in enumerate(read_argument_lines(text.splitlines()), start=1):
        try:
            arg_lists.append(convert_arguments(task, raw, []).args)
        except UsageError as error:
            raise UsageError(f"{source}, task {number}: {error.message}", hint=error.hint) from None
    result = send_bulk(cli.celery_app, task, arg_lists, options)
    if json or cli.json:
        cli.emit_json(result)
    else:
        cli.info(safe(f"sent {result.sent} {_alias(task.name)} tasks to {result.queue} in {result.seconds}s "
                      f"({result.rate_per_s}/s)"))


def _wait_and_show(cli: CliContext, task_id: str, timeout: float, json: bool) -> None:
    from carsctl.dispatch.task_results import wait_for_result

    app = cli.celery_app
    if cli.verbosity < 0 or json or cli.json:
        info = wait_for_result(app, task_id, timeout)
    else:
        with cli.err.status(f"{task_id}: PENDING") as spinner:
            info = wait_for_result(app, task_id, timeout,
                                   on_state=lambda state: spinner.update(f"{task_id}: {state}"))
    _show_result(cli, info, json)
    if info.timed_out:
        raise OperationFailed(f"task {task_id} still {info.state} after {timeout:g}s",
                              hint=f"carsctl task result {task_id} --wait")


def _show_result(cli: CliContext, info: TaskInfo, json: bool) -> None:
    """The result on stdout (a remote error and its traceback on stderr); exit 1 unless it succeeded."""
    from carsctl.dispatch.task_results import TaskState, missing_subject

    missing = missing_subject(info)
    if json or cli.json:
        cli.emit_json(info)
    elif info.known and missing is None:
        _render_result(cli, info)
    if missing is not None:
        label = _label(info.task, info.id) if info.task else info.id
        raise OperationFailed(f"{label}: {missing} does not exist; nothing was done")
    if not info.known:
        raise OperationFailed(f"unknown task id {info.id}: never sent, or its result expired",
                              hint="results are kept for RESULT_EXPIRES seconds")
    if info.state in (TaskState.FAILURE, TaskState.REVOKED):
        raise typer.Exit(EXIT_FAILED)


def _render_result(cli: CliContext, info: TaskInfo) -> None:
    from carsctl.dispatch.task_results import TaskState
    from carsctl.render import dump_json, key_values, short_time

    label = _label(info.task, info.id) if info.task else info.id
    if info.state == TaskState.SUCCESS:
        cli.info(safe(f"{label}: SUCCESS on {info.worker} {short_time(info.date_done)}"))
        print(dump_json(info.result))
    elif info.state in (TaskState.FAILURE, TaskState.RETRY, TaskState.REVOKED):
        cli.err.print(f"{safe(label)}: [bold]{info.state}[/bold] {safe(info.error or '')}")
        if info.traceback:
            cli.err.print(safe(info.traceback.rstrip()))
    else:
        shown = (("id", info.id), ("state", info.state), ("location", info.location), ("task", info.task),
                 ("worker", info.worker))
        cli.out.print(key_values(None, ((k, v) for k, v in shown if v)))


@app.command("result")
def result(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID", help="The task id.")],
           wait: WaitOpt = False, timeout: WaitTimeoutOpt = 300.0, json: JsonOpt = False) -> None:
    """A task's state and result (or error and traceback); an unknown or expired id says so at once.

    Exit code 0 succeeded or still pending, 1 failed or unknown.

    \b
    Example: carsctl task result 1f0c...e2 --wait --timeout 60
    """
    from carsctl.dispatch.arguments import task_id_argument
    from carsctl.dispatch.task_results import FINISHED, result_info

    task_id = task_id_argument(task_id)
    cli = obj(ctx)
    info = result_info(cli.celery_app, task_id, settings=cli.settings)
    if wait and info.known and info.state not in FINISHED:
        _wait_and_show(cli, task_id, timeout, json)
    else:
        _show_result(cli, info, json)


@app.command("revoke")
def revoke(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID", help="The task id.")],
           terminate: Annotated[bool, typer.Option("--terminate", help="Also kill it if it is running (SIGTERM).")]
           = False, json: JsonOpt = False) -> None:
    """Make sure a task does not run: workers drop it, and it is taken out of its queue.

    Says where the task was: taken out of its queue, held by a worker (a run already started finishes
    unless --terminate), already finished, or nowhere (workers drop it if it arrives later).

    \b
    Example: carsctl task revoke 1f0c...e2 --terminate
    """
    from carsctl.dispatch.arguments import task_id_argument
    from carsctl.dispatch.task_results import RevokeOutcome
    from carsctl.dispatch.task_results import revoke as revoke_task

    task_id = task_id_argument(task_id)
    cli = obj(ctx)
    outcome = revoke_task(cli.celery_app, task_id, terminate=terminate, settings=cli.settings)
    if json or cli.json:
        cli.emit_json(outcome)
        return
    cli.info(safe(f"revoked {task_id}: {_revoke_text(outcome)}"))
    if not outcome.acknowledged_by and outcome.outcome != RevokeOutcome.REMOVED_FROM_QUEUE:
        cli.info("warning: no worker answered: a worker started later does not know of this revoke")


def _revoke_text(outcome: RevokeResult) -> str:
    from carsctl.dispatch.task_results import RevokeOutcome

    workers = f"{len(outcome.acknowledged_by)} worker(s)"
    match outcome.outcome:
        case RevokeOutcome.REMOVED_FROM_QUEUE:
            return f"removed from queue {outcome.removed_from_queue}; it will not run"
        case RevokeOutcome.HELD_BY_WORKER:
            if outcome.terminate:
                return f"{outcome.location}: terminated (SIGTERM); {workers} acknowledged"
            return (f"{outcome.location}: a run already started finishes (--terminate stops it); "
                    f"{workers} will not start it")
        case RevokeOutcome.DELIVERED:
            return f"{outcome.location}; {workers} will drop it"
        case RevokeOutcome.FINISHED:
            return f"it had already finished ({outcome.location}): nothing to stop"
        case _:
            return f"not queued, not running; {workers} will drop it if it arrives"


@app.command("failed")
def failed(ctx: typer.Context,
           limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="At most N.")] = 50,
           include_retried: Annotated[bool, typer.Option("--include-retried", help="Also those retried.")] = False,
           json: JsonOpt = False) -> None:
    """The failed-task registry: tasks that failed for good, with their arguments, newest first.

    \b
    Example: carsctl task failed --limit 10
    """
    from carsctl.dispatch.failed_registry import failed_rows

    cli = obj(ctx)
    cli.settings  # noqa: B018 - a configuration error is one line before the database is touched
    rows = failed_rows(limit, include_retried)
    if json or cli.json:
        cli.emit_json(rows)
        return
    if not rows:
        cli.info("no failed tasks")
        return
    from carsctl.render import call_args, short_time, table

    cli.out.print(table("Failed tasks", ("ID", "Task", "Args", "Exception", "Failed", "Status"), (
        (r.id, r.alias, call_args(r.args, r.kwargs), r.exception, short_time(r.failed_at),
         r.status + (f" -> {r.retry_task_id}" if r.retry_task_id else "")) for r in rows)))


@app.command("retry")
def retry(ctx: typer.Context,
          ident: Annotated[str | None, typer.Argument(metavar="ID", help="Registry id or task id.")] = None,
          every: Annotated[bool, typer.Option("--all", help="Every failed task not retried yet.")] = False,
          yes: YesOpt = False, json: JsonOpt = False) -> None:
    """Send a failed task again with its original arguments and queue; the record is marked retried.

    \b
    Example: carsctl task retry 17
    Example: carsctl task retry --all --yes
    """
    from carsctl.dispatch.arguments import failed_task_argument
    from carsctl.dispatch.failed_registry import pending_count, retry_failed

    cli = obj(ctx)
    if every == (ident is not None):
        raise UsageError("give one failed task's ID, or --all")
    ident = None if ident is None else failed_task_argument(ident)
    if every and not yes:
        cli.confirm_or_refuse(f"Send {pending_count()} failed task(s) again?", "retry every failed task")
    done = retry_failed(cli.celery_app, ident, every=every)
    if json or cli.json:
        cli.emit_json(done)
        return
    for row in done:
        cli.info(safe(f"retried {row.alias} (failed {row.task_id}) as {row.retry_task_id}"))
    cli.info(safe(f"Retried {len(done)} failed task(s)"))
