"""The ESMTP details the demo server adds to stock aiosmtpd, as plain functions.

* RFC 3461 DSN parameters (``RET``, ``ENVID`` on MAIL; ``NOTIFY``, ``ORCPT`` on
  RCPT), checked and xtext-decoded (stock aiosmtpd answers 555 to them);
* ``SIZE``, ``BODY``, ``SMTPUTF8`` and (with AUTH on) RFC 4954 ``AUTH=`` on MAIL;
* RFC 3463 enhanced status codes added to every reply that lacks one.

A bad parameter raises :class:`ParamError` carrying the reply to give.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..transport import xtext

_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")

_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE = re.compile(r"[!-<>-~\x80-\U0010ffff]+")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}

# Default RFC 3463 codes added to replies that lack one.
_ENHANCED_BY_CODE = {
    "211": "2.0.0", "214": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "252": "2.0.0",
    "421": "4.3.0", "432": "4.7.12", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0",
    "534": "5.7.9", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3",
    "554": "5.3.0", "555": "5.5.4",
}
_ENHANCED_BY_COMMAND = {("MAIL", "250"): "2.1.0", ("RCPT", "250"): "2.1.5"}
_REPLY = re.compile(r"([245])(\d\d)([ -])(.*)", re.S)
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")


class ParamError(Exception):
    """A MAIL/RCPT parameter the server refuses; ``reply`` is the SMTP reply."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext; raises ``ValueError`` if ``value`` is not xtext.

    Strict, as a server should be (hex escapes in upper case, no stray
    characters); the decoding itself is relcomm's one copy, which is lenient
    because the receipts parser reads what others wrote.
    """
    if not _XTEXT.fullmatch(value):
        raise ValueError(f"not valid xtext: {value!r}")
    return xtext.decode(value)


def _xtext(key: str, value: Optional[str], *, max_len: int) -> str:
    if not value or len(value) > max_len:
        raise ParamError(f"501 5.5.4 Syntax: {key}=<xtext> of at most {max_len} characters")
    try:
        return xtext_decode(value)
    except ValueError:
        raise ParamError(f"501 5.5.4 {key} is not valid xtext") from None


def split_params(rest: str) -> dict[str, Optional[str]]:
    """Split ``rest`` into {KEYWORD: value or None}; 501 on bad syntax."""
    params: dict[str, Optional[str]] = {}
    for item in rest.split():
        keyword, eq, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(keyword) or (eq and not _ESMTP_VALUE.fullmatch(value)):
            raise ParamError(f"501 5.5.4 Syntax error in parameter {item!r}")
        keyword = keyword.upper()
        if keyword in params:
            raise ParamError(f"501 5.5.4 Duplicate parameter {keyword}")
        params[keyword] = value if eq else None
    return params


def parse_mail_params(rest: str, *, size_limit: int, smtputf8: bool, auth: bool) -> dict[str, Any]:
    """The MAIL FROM parameters in ``rest``, decoded; raises :class:`ParamError`."""
    result: dict[str, Any] = {}
    for key, value in split_params(rest).items():
        if key == "SIZE":
            if value is None or not value.isdigit():
                raise ParamError("501 5.5.4 Syntax: SIZE=<number>")
            if size_limit and int(value) > size_limit:
                raise ParamError("552 5.3.4 Message size exceeds fixed maximum message size")
            result[key] = int(value)
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise ParamError("501 5.5.4 BODY can only be one of 7BIT, 8BITMIME")
            result[key] = value.upper()
        elif key == "SMTPUTF8":
            if value is not None:
                raise ParamError("501 5.5.4 SMTPUTF8 takes no arguments")
            if not smtputf8:
                raise ParamError("555 5.5.4 SMTPUTF8 disabled")
            result[key] = True
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise ParamError("501 5.5.4 Syntax: RET=FULL|HDRS")
            result[key] = value.upper()
        elif key == "ENVID":
            result[key] = _xtext(key, value, max_len=100)
        elif key == "AUTH" and auth:  # RFC 4954 section 5
            result[key] = value if value == "<>" else _xtext(key, value, max_len=500)
        else:
            raise ParamError(f"555 5.5.4 MAIL FROM parameter {key} not recognized")
    return result


def parse_rcpt_params(rest: str) -> dict[str, Any]:
    """The RCPT TO parameters in ``rest``, decoded; raises :class:`ParamError`."""
    result: dict[str, Any] = {}
    for key, value in split_params(rest).items():
        if key == "NOTIFY":
            items = (value or "").upper().split(",")
            if items != ["NEVER"] and (
                not all(i in _NOTIFY_VALUES for i in items) or len(set(items)) != len(items)
            ):
                raise ParamError("501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY")
            result[key] = items
        elif key == "ORCPT":
            addr_type, semi, address = (value or "").partition(";")
            if not semi or not _ADDR_TYPE.fullmatch(addr_type) or not address:
                raise ParamError("501 5.5.4 Syntax: ORCPT=<addr-type>;<xtext>")
            result[key] = f"{addr_type};{_xtext(key, address, max_len=500)}"
        else:
            raise ParamError(f"555 5.5.4 RCPT TO parameter {key} not recognized")
    return result


def enhance(command: Optional[str], status: str) -> str:
    """``status`` with an RFC 3463 enhanced code added when it has none.

    ``command`` is the verb being answered (None: the greeting). EHLO's
    capability lines and intermediate replies stay as they are.
    """
    m = _REPLY.fullmatch(status)
    if m is None or command is None:
        return status
    code = m.group(1) + m.group(2)
    if command in ("EHLO", "HELO") and code == "250":
        return status
    if _HAS_ENHANCED.match(m.group(4)):
        return status
    enhanced = _ENHANCED_BY_COMMAND.get((command, code)) or _ENHANCED_BY_CODE.get(code, f"{m.group(1)}.0.0")
    return f"{code}{m.group(3)}{enhanced} {m.group(4)}"
