"""What a channel cell names: a public username, an invite link, or a numeric `-100...` id.

The channel sync stores invite links exactly as typed (their hash is case-sensitive) and usernames
normalised; this module tells them apart for the monitor, without Telegram.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_INVITE = re.compile(r"^(?:https?://)?(?:t|telegram)\.me/(?:\+|joinchat/)([A-Za-z0-9_-]+)/?$")
_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")


class RefKind(StrEnum):
    """How a channel is named."""

    USERNAME = "username"
    INVITE = "invite"
    ID = "id"


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A parsed channel reference: the username (no "@"), the invite hash, or the channel id (no -100)."""

    kind: RefKind
    value: str

    @property
    def channel_id(self) -> int:
        """The bare channel id of an ID reference (`-1001234` -> 1234)."""
        return int(self.value)


def parse_channel_ref(raw: str) -> ChannelRef:
    """`@cars`, `cars`, `https://t.me/cars`, `t.me/+AbC`, `t.me/joinchat/AbC`, `-1001234567890`.

    Raises ValueError for anything else.
    """
    text = raw.strip()
    invite = _INVITE.match(text)
    if invite:
        return ChannelRef(RefKind.INVITE, invite.group(1))
    if re.fullmatch(r"-?\d+", text):
        number = text.removeprefix("-")
        number = number.removeprefix("100") if text.startswith("-100") else number
        if not number or int(number) <= 0:
            raise ValueError(f"not a channel id: {raw!r}")
        return ChannelRef(RefKind.ID, str(int(number)))
    name = text
    for prefix in ("https://", "http://"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("t.me/").removeprefix("telegram.me/").removeprefix("s/").lstrip("@")
    name = name.split("/", 1)[0]
    if not _USERNAME.fullmatch(name):
        raise ValueError(f"not a channel username or link: {raw!r}")
    return ChannelRef(RefKind.USERNAME, name.lower())
