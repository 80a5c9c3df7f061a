"""Build the email message: multipart/alternative (text/plain Markdown + text/html), with safe headers.

Header values that come from data (names, addresses, the rendered subject, custom headers) must
never carry CR or LF: that is header injection, and it is refused, never folded or passed on.
"""

from __future__ import annotations

import email.policy
import html
import re
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from .markdown import PAGE, to_html

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII except ':'
# Headers relcomm sets itself; a communique's `headers` table may not override them.
RESERVED = frozenset(h.lower() for h in (
    "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Reply-To", "List-Id", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "Disposition-Notification-To", "Return-Path",
    "X-Relcomm-Communique", "X-Relcomm-Release", "Sender",
))


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry builds a new header class on every lookup; build each one once."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# email.policy.default with the faster registry; serialise with email.policy.SMTP for CRLF.
POLICY = email.policy.default.clone(header_factory=_HeaderClasses())


class HeaderProblem(ValueError):
    """kind: "injection" (a line break), "header" (a bad custom header), "address" (a bad address)."""

    def __init__(self, message: str, hint: str, kind: str = "address") -> None:
        super().__init__(message)
        self.message, self.hint, self.kind = message, hint, kind


# Line breaks of any kind (CR, LF, and what str.splitlines also splits on: VT, FF, FS..US, NEL,
# U+2028/9), NUL and the other control characters: none belongs in a header value (TAB does).
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
MAX_HEADER = 998  # RFC 5322: characters in one line; a longer value is not a name, subject or address


def header_problem(value: str) -> str:
    """Why a value cannot go into a header, or "": an injection first, else its length."""
    return header_injection(value) or header_too_long(value)


def header_too_long(value: str) -> str:
    return f"{len(value):,} characters (at most {MAX_HEADER})" if len(value) > MAX_HEADER else ""


def header_injection(value: str) -> str:
    """The control character that would break the header (as written, or once its RFC 2047 encoded
    words are decoded), or ""."""
    found = CONTROL_CHARS.search(value)
    if found is None and _ENCODED_WORD.search(value):
        # "=?utf-8?q?a=0D=0ABcc:...?=" is decoded when the header is parsed: check what it says.
        try:
            decoded = str(POLICY.header_factory("X-Relcomm-Check", value))
        except Exception:  # noqa: BLE001 - whatever the stdlib makes of it, it is not a safe header
            return "an encoded word that cannot be decoded"
        found = CONTROL_CHARS.search(decoded)
        if found is not None:
            return f"an encoded word that decodes to {_name(found.group())}"
    return _name(found.group()) if found is not None else ""


def _name(char: str) -> str:
    names = {"\r": "a line break (CR)", "\n": "a line break (LF)", "\x00": "a NUL character"}
    return names.get(char, f"a control character (U+{ord(char):04X})")


def no_newlines(what: str, value: str) -> str:
    """`value` if it is safe in a header; else HeaderProblem(kind="injection"). Never folded or passed on."""
    problem = header_injection(value)
    too_long = header_too_long(value)
    if too_long and not problem:
        raise HeaderProblem(f"the {what} is too long for a header: {too_long}",
                            "shorten it; a header line holds at most 998 characters", "header")
    if problem:
        shown = CONTROL_CHARS.sub(lambda m: repr(m.group())[1:-1], value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise HeaderProblem(
            f"header injection: the {what} contains {problem} ({shown!r})",
            "put it on one line, without control characters or encoded line breaks; relcomm never passes it on",
            "injection",
        )
    return value


def mailbox(what: str, text: str) -> Address:
    """ "Name <addr>" or "addr" as an Address, refusing line breaks and unparseable text."""
    no_newlines(what, text)
    name, addr = parseaddr(text)
    if not addr or "@" not in addr:
        raise HeaderProblem(f"the {what} is not an email address: {text!r}", 'write "Name <user@example.com>"')
    return address(what, name, addr)


def address(what: str, name: str, addr: str) -> Address:
    no_newlines(what, name)
    no_newlines(what, addr)
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as error:
        raise HeaderProblem(f"the {what} is not a valid address: {addr!r} ({error})",
                            "fix the address in the plan or the members file") from None


def fixed_headers(*, from_: Address, reply_to: Address | None, list_id: str | None, list_name: str,
                  communique_id: str, release_version: str, notification_to: Address | None,
                  extra_headers: dict[str, str]) -> list[tuple[str, Any]]:
    """The headers that are the same in every message of a communique, parsed once.

    The stdlib parses a header value on every assignment unless it is given a header object of that
    name; building these once makes 10,000 messages several times cheaper.
    """
    values: list[tuple[str, Any]] = [("From", from_)]
    if reply_to is not None:
        values.append(("Reply-To", reply_to))
    if list_id:
        no_newlines("list_id", list_id)
        no_newlines("release name", list_name)
        values.append(("List-Id", f"{_phrase(list_name)} <{list_id.strip('<> ')}>"))
    values.append(("X-Relcomm-Communique", no_newlines("communique id", communique_id)))
    values.append(("X-Relcomm-Release", no_newlines("release version", release_version)))
    if notification_to is not None:
        values.append(("Disposition-Notification-To", str(notification_to)))
    for name, value in extra_headers.items():
        if not _HEADER_NAME.match(name):
            raise HeaderProblem(f"{name!r} is not a valid header name", "header names are ASCII letters, digits and dashes",
                               "header")
        if name.lower() in RESERVED:
            raise HeaderProblem(f"the header {name} is set by relcomm and cannot be overridden",
                                "remove it from the communique's `headers`", "header")
        values.append((name, no_newlines(f"header {name}", value)))
    factory = POLICY.header_factory
    return [(name, factory(name, value if isinstance(value, str) else str(value))) for name, value in values]


def build_email(*, subject: str, text: str, html: str, to: Address, message_id: str | None, domain: str,
                fixed: list[tuple[str, Any]]) -> EmailMessage:
    """One message: fixed headers from `fixed_headers`, the rest (To, Subject, ids) per recipient."""
    message = EmailMessage(policy=POLICY)
    message["Message-ID"] = no_newlines("Message-ID", message_id) if message_id else make_msgid(domain=domain or None)
    message["Date"] = formatdate(localtime=True)
    message[fixed[0][0]] = fixed[0][1]  # From
    message["To"] = to
    message["Subject"] = no_newlines("subject", subject)
    for name, header in fixed[1:]:
        message[name] = header
    for name, value in message.items():
        # Last line of defence: whatever the parsing made of a value, it is one header line.
        if CONTROL_CHARS.search(str(value)):
            raise HeaderProblem(f"header injection: the {name} header would contain a line break",
                                "check the names, addresses and subject of this communique", "injection")
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def html_for(subject: str, text: str) -> str:
    return PAGE.format(title=_escape(subject), body=to_html(text))


def _phrase(text: str) -> str:
    # The List-Id description is a phrase: quote it when it holds specials.
    if re.search(r'[()<>\[\]:;@\\,."]', text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def headers_as_sent(message: EmailMessage) -> dict[str, str]:
    """The top-level headers, decoded, for the preview (MIME structure headers left out)."""
    skip = {"mime-version", "content-type", "content-transfer-encoding"}
    return {name: str(value) for name, value in message.items() if name.lower() not in skip}
