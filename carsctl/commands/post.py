"""`carsctl post`: put posts into the system as the monitor service would, and look at them."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from carsctl.context import obj
from carsctl.errors import UsageError
from carsctl.options import JsonOpt, TimeoutOpt

if TYPE_CHECKING:
    from carsctl.context import CliContext

app = typer.Typer(help="Add, import and inspect posts.", no_args_is_help=True)

ProcessOpt = Annotated[bool, typer.Option("--process/--no-process", help="Enqueue AI processing of new posts.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until each post is published, rejected or failed.")]


@app.command("add")
def add(ctx: typer.Context,
        channel: Annotated[str, typer.Option("--channel", help="Source channel: @name, a t.me link or -100... id.")],
        text: Annotated[str, typer.Option("--text", help="The post's text.")],
        message_id: Annotated[int | None, typer.Option("--message-id", help="Source message id.")] = None,
        process: ProcessOpt = True, wait: WaitOpt = False, timeout: TimeoutOpt = 60.0,
        json: JsonOpt = False) -> None:
    """Store one post (de-duplicated by channel and message id) and enqueue its processing.

    The post is checked as `post import` checks each line; text over 4096 characters is cut to it.
    Example: carsctl post add --channel @cars_msk --text "Продам Kia Rio 2017, 750 т.р." --wait
    """
    from cars_bot.post_input import PostInputError, validate_post

    given = {"channel": channel, "text": text, "message_id": message_id}
    try:
        post = validate_post({key: value for key, value in given.items() if value is not None})
    except PostInputError as error:
        raise UsageError(str(error)) from None
    _store(ctx, [post.model_dump(exclude_none=True)], process, wait, timeout, json)


@app.command("import")
def import_(ctx: typer.Context,
            file: Annotated[str, typer.Argument(help="JSON-lines file ('-' for stdin): channel, text, message_id...")],
            skip_invalid: Annotated[bool, typer.Option(
                "--skip-invalid", help="Store the valid lines and report the others (default: store nothing).")]
            = False,
            process: ProcessOpt = True, wait: WaitOpt = False, timeout: TimeoutOpt = 120.0,
            json: JsonOpt = False) -> None:
    """Store every post of a JSON-lines file (UTF-8) and enqueue processing of the new ones.

    Every line is checked first; with an invalid line nothing is stored (exit 2) unless --skip-invalid.
    Example: carsctl post import ads.jsonl --wait
    """
    from cars_bot.post_input import PostInputError, parse_post_lines
    from carsctl.render import safe

    cli = obj(ctx)
    name = file if len(file) <= 200 else file[:197] + "..."
    try:
        parsed = parse_post_lines(sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes())
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror or error}") from None
    except PostInputError as error:
        raise UsageError(f"{name}: {error}") from None
    for bad in parsed.invalid:
        cli.err.print(safe(f"{name}:{bad.line}: {bad.reason}"), soft_wrap=True)
    if parsed.invalid and not skip_invalid:
        raise UsageError(f"{len(parsed.invalid)} invalid line(s) in {name}: nothing stored",
                         hint="fix them, or --skip-invalid to store the valid lines")
    if parsed.invalid:
        cli.info(safe(f"skipped {len(parsed.invalid)} invalid line(s) of {name}"))
    _store(ctx, [post.model_dump(exclude_none=True) for post in parsed.posts], process, wait, timeout, json)


def _store(ctx: typer.Context, records: list[dict], process: bool, wait: bool, timeout: float, json: bool) -> None:
    from dataclasses import replace

    from cars_bot.posts import DONE_STATUSES
    from carsctl.dispatch.post_runs import store_and_enqueue
    from carsctl.render import table

    cli = obj(ctx)
    rows = store_and_enqueue(cli, [{k: v for k, v in r.items() if v is not None} for r in records], process)
    if wait and process:
        began = time.monotonic()
        states = _wait_with_progress(cli, [r.post_id for r in rows], timeout)
        rows = [replace(row, status=states.get(row.post_id)) for row in rows]
        cli.info(f"{len(rows)} posts: {_summary(states)} in {time.monotonic() - began:.1f} s")
    if json or cli.json:
        cli.emit_json(rows)
    else:
        cli.out.print(table(None, ("post", "new", "task", "status"),
                            ((r.post_id, "yes" if r.created else "duplicate", r.task_id or "", r.status or "")
                             for r in rows)))
    if wait and process and any(r.status not in DONE_STATUSES for r in rows):
        raise typer.Exit(1)


#: Seconds between progress lines while waiting, when stderr is not a terminal (no spinner there).
PROGRESS_EVERY = 5.0


def _wait_with_progress(cli: CliContext, post_ids: list[int], timeout: float) -> Mapping[int, str]:
    """Wait for the posts: a spinner on a terminal; otherwise (piped, CI, a log) a line every few seconds."""
    from carsctl.dispatch.post_runs import wait_for_posts

    if cli.err.is_terminal:
        with cli.err.status("waiting for the pipeline...") as spinner:
            return wait_for_posts(post_ids, timeout, lambda s: spinner.update(f"waiting: {_summary(s)}"))
    last = [time.monotonic()]

    def line(states: Mapping[int, str]) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            cli.info(f"waiting: {_summary(states)}")
    return wait_for_posts(post_ids, timeout, line)


def _summary(states: Mapping[int, str]) -> str:
    counts: dict[str, int] = {}
    for status in states.values():
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


@app.command("show")
def show(ctx: typer.Context, post_id: Annotated[int, typer.Argument(min=1, max=2**31 - 1, help="Post id.")],
         json: JsonOpt = False) -> None:
    """Show a post: status and reason, classification, car data, and what was published.

    Example: carsctl post show 42
    """
    from carsctl.dispatch.post_runs import describe_post
    from carsctl.render import key_values, safe

    cli = obj(ctx)
    post = describe_post(post_id)
    if json or cli.json:
        cli.emit_json(post)
        return
    cli.out.print(key_values(f"Post {post_id}", _fields(post, skip=("car", "publication", "text"))))
    if post.car:
        cli.out.print(key_values("Car", ((k, v) for k, v in _fields(post.car) if v is not None)))
    if post.publication:
        cli.out.print(key_values("Publication", _fields(post.publication, skip=("text",))))
        cli.out.print(safe(post.publication.text))


def _fields(value: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """A typed result's fields as (name, value), in their declared order."""
    from dataclasses import fields

    return [(f.name, getattr(value, f.name)) for f in fields(value) if f.name not in skip]


@app.command("list")
def list_(ctx: typer.Context,
          status: Annotated[str | None, typer.Option("--status", help="Only posts with this status.")] = None,
          limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many.")] = 20,
          json: JsonOpt = False) -> None:
    """List the newest posts with their status and car.

    Example: carsctl post list --status rejected
    """
    from carsctl.dispatch.post_runs import list_posts
    from carsctl.render import table

    cli = obj(ctx)
    rows = list_posts(status, limit)
    if json or cli.json:
        cli.emit_json(rows)
        return
    cli.out.print(table(None, ("id", "channel", "status", "car", "price", "reason"),
                        ((r.id, r.channel, r.status, " ".join(str(x) for x in (r.brand, r.model, r.year) if x),
                          r.price or "", r.reason or "") for r in rows)))
