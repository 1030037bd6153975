"""Secret masking: every credential form, and linear time on adversarial text (issue 15, items 1 and 2)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cars_bot.config import load_settings
from cars_bot.secret_masking import mask_secrets_in, mask_text, mask_url


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://user:pw@h:1/0", "redis://user:****@h:1/0"),
    ("redis://:pw@h:1/0", "redis://:****@h:1/0"),
    ("redis://h:1/0", "redis://h:1/0"),
    ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
    ("postgresql://u@h:5432/db?password=s3cret&sslmode=require", "postgresql://u@h:5432/db?password=****&sslmode=require"),
    ("redis://h/0?pass=s3cret", "redis://h/0?pass=****"),
    ("sentinel://:pw1@h1:26379;sentinel://:pw2@h2:26379", "sentinel://:****@h1:26379;sentinel://:****@h2:26379"),
    ("postgresql://u:pw@h1:5432,h2:5432/db", "postgresql://u:****@h1:5432,h2:5432/db"),
    ("redis://:p%40ss%2Fword@h/0", "redis://:****@h/0"),
    ("redis://:p@ss/wo@rd@h/0", "redis://:****@h/0"),  # unencoded @ and / in a configured value
    ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=****"),
    ("amqp://guest:guest@localhost:5672//", "amqp://guest:****@localhost:5672//"),
])
def test_mask_url_hides_every_credential_form(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_text_hides_every_url_in_free_text() -> None:
    text = ("connect to sentinel://:first-pw@h1;sentinel://:second-pw@h2 failed, "
            "fallback 'postgresql://app:third-pw@db/app?sslmode=require' and dsn host=db password=fourth-pw")
    masked = mask_text(text)
    for secret in ("first-pw", "second-pw", "third-pw", "fourth-pw"):
        assert secret not in masked
    assert "sentinel://:****@h1;sentinel://:****@h2" in masked and "host=db" in masked


def test_configured_passwords_are_hidden_in_every_form(tmp_path: Path) -> None:
    """A library may print the decoded password, or an unencoded `/` breaks the URL pattern."""
    env = {"REDIS_URL": "redis://:Pa%2Fss%40word-9@redis.internal:6379/0",
           "DATABASE_URL": "postgresql://app@db:5432/app?password=Db-Secret-77",
           "TELEGRAM_BOT_TOKEN": "123456:ABC-DEF1234ghIkl"}
    settings = load_settings(env, cwd=tmp_path)
    text = ("auth failed for password 'Pa/ss@word-9'; db said Db-Secret-77 is wrong; "
            "token 123456%3AABC-DEF1234ghIkl rejected")
    masked = mask_secrets_in(text, settings)
    for secret in ("Pa/ss@word-9", "Db-Secret-77", "ABC-DEF1234", "123456%3AABC"):
        assert secret not in masked, masked
    assert mask_secrets_in("celery -b redis://:Pa%2Fss%40word-9@h/0", settings) == "celery -b redis://:****@h/0"


# Shapes that made the former `[a-z0-9+]+://...` pattern backtrack quadratically (2.3 s on 20 KB).
ADVERSARIAL = ["x", "a://", "a://b:", "://:", "password=", "a:", "redis://u:p", "k=v&", "pass=v "]
_REFERENCE = re.compile(r"://|=|@")  # one linear pass over the same text


def _best(function: Callable[[str], object], text: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - began)
    return min(times)


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_masking_is_linear_on_adversarial_text(unit: str, tmp_path: Path) -> None:
    """Masking 50 KB costs at most 20 linear regex passes over it (it is ~0.5 of one; quadratic: ~10^4)."""
    settings = load_settings({"REDIS_URL": "redis://:some-password@h/0"}, cwd=tmp_path)
    text = unit * (50_000 // len(unit))
    reference = _best(_REFERENCE.findall, text)
    for mask in (mask_text, mask_url, lambda t: mask_secrets_in(t, settings)):
        assert _best(mask, text) < 20 * reference + 0.002


def test_errors_mask_secrets_when_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote service's answer quoted in an error is stored (post status, result backend)."""
    from cars_bot.config import reset_settings
    from cars_bot.errors import PermanentError, TransientError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-quoted-key-0123456789")
    reset_settings()
    try:
        error = PermanentError("401: Incorrect API key provided: Bearer sk-proj-quoted-key-0123456789")
        assert "quoted-key" not in str(error)
        assert "hunter2" not in str(TransientError("lost redis://:hunter2@h/0", retry_after=1.0))
    finally:
        reset_settings()


def test_mask_exception_masks_the_whole_chain(tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-proj-chained-key-0123456789"}, cwd=tmp_path)

    class ApiError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

    key, url = "sk-proj-" + "chained-key-0123456789", "postgresql://u:" + "pw-in-url@h/db"  # not in source lines
    try:
        try:
            raise ApiError(f"key {key} rejected")
        except ApiError as cause:
            raise RuntimeError(f"db at {url} failed") from cause
    except RuntimeError as error:
        from cars_bot.secret_masking import mask_exception

        mask_exception(error, settings)
        import traceback

        text = "".join(traceback.format_exception(error))
        assert "chained-key" not in text and "pw-in-url" not in text
        assert error.__cause__ is not None and "chained-key" not in error.__cause__.message  # type: ignore[attr-defined]
