"""Well-formed Telethon StringSession strings for tests (nothing behind them: a loopback data centre)."""

from __future__ import annotations

import base64
import ipaddress
import struct


def fake_session_string(tag: str = "") -> str:
    """A StringSession that Telethon accepts, carrying `tag` (letters and digits) verbatim in its text, so a
    secret scan can search for it. The tag is placed in the auth key at a 3-byte boundary of the encoding."""
    text = tag + "A" * (-len(tag) % 4)
    key = (b"\x01\x02" + base64.urlsafe_b64decode(text)).ljust(256, b"\x03")  # bytes 7+2 = 9: a boundary
    data = struct.pack(">B4sH256s", 2, ipaddress.ip_address("127.0.0.1").packed, 443, key)
    return "1" + base64.urlsafe_b64encode(data).decode("ascii")
