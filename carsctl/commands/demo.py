"""`carsctl demo`: the end of the README's first command: push the sample ads through the running stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carsctl.context import obj
from carsctl.options import JsonOpt, TimeoutOpt


def demo(ctx: typer.Context,
         file: Annotated[Path | None, typer.Option("--file", help="JSON-lines posts instead of the samples.")] = None,
         timeout: TimeoutOpt = 120.0, json: JsonOpt = False) -> None:
    """Push sample car ads through the running stack: classify -> extract -> generate -> publish.

    Start the stack first with `carsctl up`. Prints what happened to each post and where the published
    posts are (the outbox without Telegram credentials). Exit code 1 if a post did not finish, 69 when
    no worker is running.
    Example: carsctl up && carsctl demo
    """
    from cars_bot.posts import read_jsonl, sample_posts_path
    from carsctl.dispatch.post_runs import describe_post, store_and_enqueue, wait_for_posts
    from carsctl.errors import DependencyUnavailable
    from carsctl.health.connectivity import check_broker

    cli = obj(ctx)
    check_broker(cli.settings)
    if not cli.celery_app.control.ping(timeout=1.0):
        raise DependencyUnavailable("no worker is running", hint="start the stack with `carsctl up`")
    # Fresh message ids on every run, so each run pushes posts through the pipeline again.
    records = [{k: v for k, v in r.items() if k != "message_id"} for r in read_jsonl(file or sample_posts_path())]
    rows = store_and_enqueue(cli, records, process=True)
    cli.info(f"posts: {len(rows)} stored and sent to the ai_processing queue")
    with cli.err.status("waiting for the pipeline..."):
        wait_for_posts([r["post_id"] for r in rows], timeout)
    posts = [describe_post(r["post_id"]) for r in rows]
    if json or cli.json:
        cli.emit_json(posts)
    else:
        _report(cli, posts)
    if any(p["status"] not in ("published", "rejected") for p in posts):
        raise typer.Exit(1)


def _report(cli, posts: list[dict]) -> None:  # type: ignore[no-untyped-def]
    from carsctl.render import safe, table

    def car(p: dict) -> str:
        c = p["car"] or {}
        return " ".join(str(c[k]) for k in ("brand", "model", "year") if c.get(k))

    cli.out.print(table("What happened", ("post", "channel", "status", "car", "price", "why / where"),
                        ((p["id"], "@" + p["channel"], p["status"], car(p), (p["car"] or {}).get("price") or "",
                          p["reason"] or (p["publication"] or {}).get("target", "")) for p in posts)))
    published = [p for p in posts if p["publication"]]
    if published:
        first = published[0]
        cli.out.print(f"\nPublished post {first['id']} as it would appear in the channel:\n")
        cli.out.print(safe(first["publication"]["text"]))
        target = first["publication"]["target"]
        if target == "outbox":
            cli.info(f"\nTelegram is not configured: the posts are in {cli.settings.home / 'outbox'}; "
                     f"`carsctl post show {first['id']}` shows one.")
    cli.info("The stack keeps running: `carsctl status` shows it, `carsctl down` stops it.")
