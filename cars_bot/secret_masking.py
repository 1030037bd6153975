"""Secret masking for everything the project shows, logs or stores: URLs, errors (and their chains), logs.

Three forms of credential are recognised in any text:

- the password of a URL's userinfo, `scheme://user:password@host` -> `scheme://user:****@host`, in every
  URL of the text (so each host of `sentinel://:pw@h1;sentinel://:pw@h2`);
- a password-like query or key=value parameter, `?password=...`, `&pass=...`, `pwd=`, `secret=`, `token=`,
  `api_key=` -> `password=****`;
- with the settings, the literal value of every secret variable and of every password inside the
  configured URLs, raw, percent-decoded and percent-encoded (an unencoded `/` or `@` in a password, or
  a library that prints the decoded form, is still caught).

Everything here runs in time linear in the text: each pattern starts with a literal (`://`, `=`) and its
variable parts cannot run past the next `/` or whitespace, so no input makes the regex engine backtrack
over more than one URL (the former scheme-first pattern took seconds on a 20 KB line).

Standard library only, so the CLI's error boundary can use it without importing anything heavy.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from cars_bot.config import Settings

HIDDEN = "****"
MIN_LITERAL = 6  # shorter configured secrets are not replaced inside free text: too many false hits

# `://`, a user without `:/@` or whitespace, `:`, a password up to the LAST `@` before a `/`, `?`, `#` or
# whitespace. Both variable parts stop at the `/` of the next `://`, which bounds every attempt.
_USERINFO = re.compile(r"://(?P<user>[^\s:/@?#]*):(?P<pw>[^\s/?#]*)@")
# key=value whose key ends in a password-like word (`password=`, `sentinel_password=`, `PASS=`, `api_key=`):
# the pattern starts at the `=` (a literal the engine skips to), then looks back over the fixed-width key in
# any case. A case-insensitive alternation of keys, or a Python check per `=`, was 5 to 15 times slower.
_KEYS = ("password", "passwd", "pass", "pwd", "secret", "token", "api_key", "apikey")


def _any_case(word: str) -> str:
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


_KEY_BEHIND = "|".join(f"(?<={_any_case(key)}=)" for key in _KEYS)
# The one-character look-behind first: most `=` are not after a key's last letter and fail at once.
_PARAM = re.compile(rf"=(?<=[dDsStTnNyY]=)(?:{_KEY_BEHIND})(?P<value>[^&\s#;,'\"]+)")


def mask(secret: str) -> str:
    """Mask a secret, keeping at most its last 4 characters for long values."""
    if len(secret) < 12:
        return HIDDEN
    return HIDDEN + secret[-4:]


def mask_text(text: str) -> str:
    """Mask URL passwords and password-like parameters anywhere in `text` (linear time)."""
    if "://" in text:
        text = _USERINFO.sub(rf"://\g<user>:{HIDDEN}@", text)
    if "=" in text:
        text = _PARAM.sub(f"={HIDDEN}", text)
    return text


def mask_url(url: str) -> str:
    """Hide every password in a URL value (`redis://:secret@host` -> `redis://:****@host`).

    A configured value is trusted to be one URL (or several, `;`-separated): its userinfo runs to the
    last `@` of each part, so an unencoded `/` or `@` inside the password is hidden too.
    """
    return mask_text(";".join(_mask_userinfo(part) for part in url.split(";")))


def _mask_userinfo(part: str) -> str:
    start = part.find("://")
    if start < 0:
        return part
    start += 3
    query = min((i for i in (part.find("?", start), part.find("#", start)) if i >= 0), default=len(part))
    at = part.rfind("@", start, query)
    if at < 0:
        return part
    user, colon, _ = part[start:at].partition(":")
    return part[:start] + (f"{user}:{HIDDEN}" if colon else user) + part[at:]


def url_passwords(url: str) -> list[str]:
    """The passwords inside a configured URL value (userinfo and query parameters), as written."""
    found: list[str] = []
    for part in url.split(";"):
        start = part.find("://")
        if start >= 0:
            start += 3
            query = min((i for i in (part.find("?", start), part.find("#", start)) if i >= 0), default=len(part))
            at = part.rfind("@", start, query)
            if at >= 0 and ":" in part[start:at]:
                found.append(part[start:at].partition(":")[2])
        found += [m["value"] for m in _PARAM.finditer(part)]
    return [p for p in found if p]


def literal_secrets(settings: Settings) -> list[tuple[str, str]]:
    """(form, replacement) for every configured secret value and URL password, longest first.

    Secret variables keep their last 4 characters (`****1234`, to tell two tokens apart); URL passwords
    are hidden whole. Each value also in its percent-decoded and percent-encoded forms.
    """
    global _cached
    if _cached is not None and _cached[0] is settings:
        return _cached[1]
    from cars_bot.config import VARS

    pairs: dict[str, str] = {}
    for var in VARS:
        value = settings.value(var)
        if not value:
            continue
        if var.secret:
            pairs.update((form, mask(form)) for form in _forms(str(value)))
        elif isinstance(value, str) and "://" in value:
            for password in url_passwords(value):
                pairs.update((form, HIDDEN) for form in _forms(password))
    found = sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)
    _cached = (settings, found)
    return found


_cached: tuple[Settings, list[tuple[str, str]]] | None = None


def _forms(value: str) -> set[str]:
    forms = {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
    return {form for form in forms if len(form) >= MIN_LITERAL}


def mask_secrets_in(text: str, settings: Settings | None = None) -> str:
    """Mask every URL password and parameter, and every configured secret, found in `text` (logs, errors)."""
    text = mask_text(text)
    if settings is not None:
        for form, replacement in literal_secrets(settings):
            if form in text:
                text = text.replace(form, replacement)
    return text


def mask_exception(exc: BaseException, settings: Settings | None = None) -> BaseException:
    """Mask the message of `exc` and of every exception it was raised from or during, in place.

    A task's exception is stored in the result backend with its traceback, which prints each chained
    exception's message: an API client's error may quote the key it was given. The arguments of each
    (what `str()` shows for ordinary exceptions) and a `message` attribute are masked; an attribute that
    cannot be set is left as it is.
    """
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = tuple(mask_secrets_in(a, settings) if isinstance(a, str) else a for a in current.args)
            message = getattr(current, "message", None)
            if isinstance(message, str):
                current.message = mask_secrets_in(message, settings)  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        wrapped = getattr(current, "exc", None)  # celery's Retry carries the error it retries
        pending += [current.__cause__, current.__context__, wrapped if isinstance(wrapped, BaseException) else None]
    return exc
