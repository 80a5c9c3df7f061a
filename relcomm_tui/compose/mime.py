"""Build the email message: multipart/alternative (text/plain Markdown + text/html), with safe headers.

Header values that come from data (names, addresses, the rendered subject, custom headers) must
never carry CR or LF: that is header injection, and it is refused, never folded or passed on.
"""

from __future__ import annotations

import email.policy
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


def no_newlines(what: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        shown = value.replace("\r", "\\r").replace("\n", "\\n")
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise HeaderProblem(
            f"header injection: the {what} contains a line break ({shown!r})",
            "remove the line break from the data or template; relcomm never passes it on", "injection",
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
    import html

    return html.escape(text, quote=False)


def headers_as_sent(message: EmailMessage) -> dict[str, str]:
    """The top-level headers, decoded, for the preview (MIME structure headers left out)."""
    skip = {"mime-version", "content-type", "content-transfer-encoding"}
    return {name: str(value) for name, value in message.items() if name.lower() not in skip}
