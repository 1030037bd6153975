"""`carsctl demo`: the end of the README's first command: push the sample ads through the running stack."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt, TimeoutOpt

#: The queues a post passes through in the demo: classify/extract/describe, then publish.
DEMO_QUEUES = ("ai_processing", "publishing")

if TYPE_CHECKING:
    from cars_bot.posts import PostDescription
    from carsctl.context import CliContext


def demo(ctx: typer.Context,
         file: Annotated[Path | None, typer.Option("--file", help="JSON-lines posts instead of the samples.")] = None,
         timeout: TimeoutOpt = 120.0, json: JsonOpt = False) -> None:
    """Push sample car ads through the running stack: classify -> extract -> generate -> publish.

    Start the stack first with `carsctl up`. Prints what happened to each post and where the published
    posts are (the outbox without Telegram credentials). Exit code 1 if a post did not finish, 69 when
    no worker is running.
    Example: carsctl up && carsctl demo
    """
    from cars_bot.posts import DONE_STATUSES, read_jsonl, sample_posts_path
    from carsctl.cluster.queue_ops import consumer_fix, queue_consumers
    from carsctl.dispatch.post_runs import describe_post, store_and_enqueue, wait_for_posts
    from carsctl.errors import DependencyUnavailable
    from carsctl.health.connectivity import check_broker

    cli = obj(ctx)
    # Fresh message ids on every run, so each run pushes posts through the pipeline again.
    records = [{k: v for k, v in r.items() if k != "message_id"} for r in read_jsonl(file or sample_posts_path())]
    check_broker(cli.settings)
    consumers = queue_consumers(cli.celery_app, settings=cli.settings)
    if not consumers:
        raise DependencyUnavailable("no worker is running", hint="start the stack with `carsctl up`")
    missing = [queue for queue in DEMO_QUEUES if queue not in consumers]
    if missing:  # the posts would wait there for the whole --timeout: say so now
        raise DependencyUnavailable(f"no worker consumes {', '.join(missing)}: the demo's posts would wait there",
                                    hint=consumer_fix(missing[0], any_worker=True))
    rows = store_and_enqueue(cli, records, process=True)
    cli.info(f"posts: {len(rows)} stored and sent to the ai_processing queue")
    with cli.err.status("waiting for the pipeline..."):
        wait_for_posts([r.post_id for r in rows], timeout)
    posts = [describe_post(r.post_id) for r in rows]
    if json or cli.json:
        cli.emit_json(posts)
    else:
        _report(cli, posts)
    if any(p.status not in DONE_STATUSES for p in posts):
        raise typer.Exit(1)


def _report(cli: CliContext, posts: list[PostDescription]) -> None:
    from carsctl.render import table, telegram_html

    def car(p: PostDescription) -> str:
        return " ".join(str(v) for v in (p.car.brand, p.car.model, p.car.year) if v) if p.car else ""

    cli.out.print(table("What happened", ("post", "channel", "status", "car", "price", "why / where"),
                        ((p.id, "@" + p.channel, p.status, car(p), (p.car.price if p.car else None) or "",
                          p.reason or (p.publication.target if p.publication else "")) for p in posts)))
    published = [(p.id, p.publication) for p in posts if p.publication]
    if published:
        post_id, publication = published[0]
        cli.out.print(f"\nPublished post {post_id} as it would appear in the channel:\n")
        cli.out.print(telegram_html(publication.text))
        if publication.target == "outbox":
            cli.info(f"\nTelegram is not configured: the posts are in {cli.settings.home / 'outbox'}; "
                     f"`carsctl post show {post_id}` shows one.")
    cli.info("The stack keeps running: `carsctl status` shows it, `carsctl down` stops it.")
