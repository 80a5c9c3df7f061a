"""Network facts shared by the checks and the channels."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for hosts that never leave this machine (where plain SMTP is acceptable)."""
    host = host.strip("[]")
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
