"""RFC 3461 xtext, the one copy: how ENVID and ORCPT travel on the wire and come back in reports.

xtext is printable ASCII except "+" and "=", every other byte written as "+HH". The bytes are
UTF-8, so decoding collects bytes first: "caf+C3+A9" is "café", not "cafÃ©".
"""

from __future__ import annotations

import re

_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")


def encode(text: str) -> str:
    """`text` as xtext (its UTF-8 bytes)."""
    return "".join(chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in text.encode("utf-8"))


def decode(value: str) -> str:
    """xtext back to text, leniently: reports in the wild use lower-case hex and stray bytes;
    what is not valid UTF-8 after decoding is shown with replacement characters."""
    out = bytearray()
    position = 0
    for match in _HEX.finditer(value):
        out += value[position:match.start()].encode("utf-8", "surrogateescape")
        out.append(int(match.group(1), 16))
        position = match.end()
    out += value[position:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "replace")
