"""The one schema of a post coming in: `carsctl post add|import` now, the Telegram monitor's ingest later.

Every record is validated before anything is stored, so a wrong type never reaches the database
(`"message_id": "abc"` used to be stored as TEXT and published as a broken link):

- `channel`: `@name`, a `t.me/name` link (`https://`, `telegram.me`, a trailing `/123` allowed) or a
  `-100...` chat id;
- `text`: non-empty, at most MAX_INPUT_TEXT characters (longer text is cut to Telegram's 4096 when it
  is stored, see `cars_bot.posts.store_post`);
- `message_id`, `message_ids`: positive 64-bit integers (JSON numbers, not strings or floats);
- `media`: a list of objects `{"message_id": n, "type": "photo", "channel": "@name"}` (only
  `message_id` required);
- `link`: an http(s) URL; `media_group_id`: a 64-bit integer. Unknown keys are refused.

A JSON-lines file is read as bytes: UTF-8 (a leading BOM is accepted), one object per line; each bad
line is reported with its number and reason (`ParsedPosts.invalid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_MESSAGE_ID = 2**63 - 1
#: Text longer than this is refused at validation: no post is a megabyte long.
MAX_INPUT_TEXT = 100_000
MAX_MEDIA_ITEMS = 100
MAX_LINK_CHARS = 2048

MessageId = Annotated[int, Field(strict=True, ge=1, le=MAX_MESSAGE_ID)]
GroupId = Annotated[int, Field(strict=True, ge=-(2**63), le=MAX_MESSAGE_ID)]

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_CHAT_ID = re.compile(r"-100[0-9]{1,16}")
_LINK = re.compile(r"(?:https?://)?(?:www\.)?(?:t|telegram)\.me/(?P<name>[^/?#\s]+)(?:/[0-9]+)?/?", re.I)
CHANNEL_FORMS = "@name, https://t.me/name or a -100... chat id"


class PostInputError(ValueError):
    """A record or a file that cannot be taken as posts; the message says which and why."""


def channel_form(raw: str) -> str:
    """A channel as given (`@Cars_MSK`, `t.me/cars_msk/12`, `-1001234567890`) in its canonical form
    (`@Cars_MSK`, `@cars_msk`, `-1001234567890`); ValueError if it is none of these."""
    name = raw.strip()
    if _CHAT_ID.fullmatch(name):
        return name
    link = _LINK.fullmatch(name)
    if link:
        name = link.group("name")
    elif name.startswith("@"):
        name = name[1:]
    else:
        raise ValueError(f"channel must be {CHANNEL_FORMS}")
    if not _USERNAME.fullmatch(name):
        raise ValueError("a channel name is a letter, then letters, digits or _ (at most 32)")
    return "@" + name


def _clean_text(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return value


class MediaItem(BaseModel):
    """One source message holding media that the published post re-sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: MessageId
    type: Annotated[str, Field(strict=True, min_length=1, max_length=32)] | None = None
    channel: str | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return None if value is None else channel_form(value)


class PostInput(BaseModel):
    """A post to store, checked: see the module's docstring for each field's rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    channel: str
    text: str
    message_id: MessageId | None = None
    link: Annotated[str, Field(max_length=MAX_LINK_CHARS, pattern=r"^https?://\S+$")] | None = None
    media: Annotated[list[MediaItem], Field(max_length=MAX_MEDIA_ITEMS)] = []
    message_ids: Annotated[list[MessageId], Field(max_length=MAX_MEDIA_ITEMS)] = []
    media_group_id: GroupId | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return channel_form(_clean_text(value, "channel"))

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        if len(value) > MAX_INPUT_TEXT:
            raise ValueError(f"text has {len(value):,} characters; at most {MAX_INPUT_TEXT:,} are accepted")
        return _clean_text(value, "text")


def _reason(error: ValidationError) -> str:
    """pydantic's errors as one line: `message_id: Input should be a valid integer (got 'abc')`."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            parts.append(f"{where}: required")
        elif item["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        else:
            shown = repr(item.get("input"))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            parts.append(f"{where}: {message} (got {shown})" if where else message)
    return "; ".join(parts)


def validate_post(record: Any) -> PostInput:
    """One record (a JSON object, or the fields `post add` was given) as a PostInput; PostInputError."""
    if not isinstance(record, Mapping):
        raise PostInputError(f"expected a JSON object, got {type(record).__name__}")
    try:
        return PostInput.model_validate(dict(record))
    except ValidationError as error:
        raise PostInputError(_reason(error)) from None


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line of a JSON-lines file that is not a valid post, and why."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedPosts:
    """The valid posts of a JSON-lines file (with their line numbers) and the invalid lines."""

    posts: list[PostInput] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)


def parse_post_lines(data: bytes) -> ParsedPosts:
    """Every line of a JSON-lines file's bytes validated; blank lines are skipped.

    PostInputError for a file that is not text at all (NUL bytes); a line that is not UTF-8 or not
    JSON is an invalid line like any other.
    """
    if b"\x00" in data:
        raise PostInputError("this is a binary file, not JSON lines (it contains NUL bytes)")
    parsed = ParsedPosts()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            parsed.invalid.append(InvalidLine(number, f"not UTF-8 text (byte 0x{raw[error.start]:02x} at "
                                                      f"position {error.start + 1}); save the file as UTF-8"))
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:  # JSONDecodeError, and a number too long for int()
            reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            parsed.invalid.append(InvalidLine(number, f"not valid JSON ({reason})"))
            continue
        except RecursionError:
            parsed.invalid.append(InvalidLine(number, "not valid JSON (nested too deeply)"))
            continue
        try:
            parsed.posts.append(validate_post(record))
            parsed.lines.append(number)
        except PostInputError as error:
            parsed.invalid.append(InvalidLine(number, str(error)))
    return parsed
