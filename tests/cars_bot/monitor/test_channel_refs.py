"""What a channel cell names: a username, an invite link (hash kept as typed) or a -100 id."""

from __future__ import annotations

import pytest

from cars_bot.monitor.channel_refs import ChannelRef, RefKind, parse_channel_ref


@pytest.mark.parametrize(("raw", "expected"), [
    ("@Cars_MSK", ChannelRef(RefKind.USERNAME, "cars_msk")),
    ("cars_msk", ChannelRef(RefKind.USERNAME, "cars_msk")),
    ("https://t.me/cars_msk/12", ChannelRef(RefKind.USERNAME, "cars_msk")),
    ("t.me/s/cars_msk", ChannelRef(RefKind.USERNAME, "cars_msk")),
    ("https://t.me/+AbC_d-9", ChannelRef(RefKind.INVITE, "AbC_d-9")),
    ("t.me/joinchat/XyZ123", ChannelRef(RefKind.INVITE, "XyZ123")),
    ("-1001234567890", ChannelRef(RefKind.ID, "1234567890")),
])
def test_channel_cells(raw: str, expected: ChannelRef) -> None:
    assert parse_channel_ref(raw) == expected


@pytest.mark.parametrize("raw", ["", "@ab", "https://example.com/x", "-100", "t.me/+"])
def test_what_is_not_a_channel_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_channel_ref(raw)
