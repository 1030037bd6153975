"""`carsctl demo`: the sample ads through a running worker; a clear error without one."""

import json

import pytest

from tests.carsctl.cli import invoke
from tests.workers import celery_worker


@pytest.mark.slow
def test_demo_pushes_the_samples_through_the_pipeline(celery_app_real, db, tmp_path) -> None:
    with celery_worker(celery_app_real, pool="prefork", concurrency=2, log=tmp_path / "w.log"):
        result = invoke("demo", "--json")
    assert result.exit_code == 0, result.output
    posts = json.loads(result.stdout)
    assert sorted(p["status"] for p in posts) == ["published"] * 3 + ["rejected"] * 2
    published = [p for p in posts if p["status"] == "published"]
    assert all(p["publication"]["target"] == "outbox" for p in published)
    assert {p["car"]["brand"] for p in published} == {"Toyota", "Lada", "BMW"}


def test_demo_without_a_worker_is_exit_69(celery_app_real, db) -> None:
    result = invoke("demo")
    assert result.exit_code == 69 and "no worker is running" in result.output and "carsctl up" in result.output


@pytest.mark.slow
def test_demo_says_at_once_that_no_worker_consumes_ai_processing(celery_app_real, db, tmp_path) -> None:
    with celery_worker(celery_app_real, queues="monitoring,default", log=tmp_path / "w.log"):
        result = invoke("demo", "--timeout", "120")
    assert result.exit_code == 69
    assert "no worker consumes ai_processing, publishing: the demo's posts would wait there" in result.stderr
    assert "carsctl control add-consumer ai_processing" in result.stderr


def test_the_preview_renders_telegram_html_as_terminal_styles() -> None:
    from rich.console import Console

    from carsctl.render import telegram_html

    post = ('🚗 <b>BMW X5 [red]2019[/red]</b>\n💰 <b>Цена: 1 000 &amp; 5 ₽</b>\n'
            '📞 <a href="https://t.me/bot?start=7">Написать</a> <i>курсив</i>')
    text = telegram_html(post)
    console = Console(width=80, record=True, force_terminal=True, color_system="standard")
    console.print(text)
    plain = console.export_text()
    assert "<b>" not in plain and "</a>" not in plain and "&amp;" not in plain
    assert "BMW X5 [red]2019[/red]" in plain and "1 000 & 5 ₽" in plain  # post text is data, not markup
    bold = {text.plain[span.start:span.end] for span in text.spans if "bold" in str(span.style)}
    assert bold == {"BMW X5 [red]2019[/red]", "Цена: 1 000 & 5 ₽"}
    (link,) = [span for span in text.spans if getattr(span.style, "link", None)]
    assert text.plain[link.start:link.end] == "Написать" and link.style.link == "https://t.me/bot?start=7"
