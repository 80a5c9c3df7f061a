"""Inbound report parser: DSNs, MDNs, auto-replies, ARF complaints, replies and
the non-standard bounce formats of real MTAs.

``parse_message`` never raises: on trouble it returns a ``Report`` whose kind is
"none" and whose ``problem`` says why.  All work is capped (message size, text
part size, number of MIME parts) so hostile input stays cheap.

Only the errors a broken message can make the standard library raise (unknown
charsets, undecodable bytes, malformed MIME: ``MESSAGE_ERRORS``) are expected.
With ``RELCOMM_PARSE_STRICT=1`` (the tests set it) any other exception is raised
again, so a bug in the parser fails a test instead of becoming an "unparseable
message" a user would never question.

Why one long module: the fallbacks for each kind of report are tried in a fixed order, and that
order is the parser's logic; split apart it would be read out of order.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.policy
import itertools
import json
import os
import quopri
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from typing import Iterable

from ..transport import xtext
from . import bounce_heuristics as bh
from .itip import reply_of

__all__ = [
    "MESSAGE_ERRORS",
    "Report",
    "RecipientOutcome",
    "parse_message",
    "report_to_json",
    "KINDS",
]

KINDS = ("dsn", "mdn", "auto-reply", "complaint", "reply", "rsvp", "none")

MAX_RAW_BYTES = 4 * 1024 * 1024  # beyond this only the head of the message is parsed
MAX_TEXT_BYTES = 256 * 1024  # per text part
MAX_PARTS = 200
MAX_CONTAINERS = 40  # multipart/* and message/* declarations parsed; nesting beyond is read as text
MAX_BOUNDARY_LINES = 1000  # "--..." lines parsed: the stdlib parser makes a part for each
MAX_LINES = 100_000  # lines parsed: the stdlib parser keeps an object per line (4 MB of blank lines: 150 MB)
MAX_HEADERS = 1000  # header fields of the message looked at
MAX_HEADER_CHARS = 4096  # of one header value: our regexes must never see megabytes of subject
DIAG_MAX = 300

# What a broken message can make the email package and the codecs raise: tolerated, the part is skipped.
MESSAGE_ERRORS = (LookupError, UnicodeError, binascii.Error, email.errors.MessageError)
STRICT_ENV = "RELCOMM_PARSE_STRICT"


def strict() -> bool:
    """True when unexpected exceptions must surface (tests), False for users (degrade gracefully)."""
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0")


def is_message_error(exc: BaseException) -> bool:
    if isinstance(exc, MESSAGE_ERRORS):
        return True
    # the codec registry refuses a charset name holding a NUL (an RFC 2047 word's) with a ValueError
    return type(exc) is ValueError and "null character" in str(exc)


def _tolerate(exc: BaseException) -> None:
    """Called from an ``except`` that goes on without the broken part: in strict mode anything
    but a message error is a bug and is raised again."""
    if strict() and not is_message_error(exc):
        raise exc


@dataclass
class RecipientOutcome:
    address: str
    final_recipient: str = ""
    original_recipient: str = ""
    action: str = ""
    status: str = ""
    diagnostic: str = ""


@dataclass
class Report:
    kind: str = "none"
    recipients: list[RecipientOutcome] = field(default_factory=list)
    original_message_id: str | None = None
    envelope_id: str | None = None
    in_reply_to: list[str] = field(default_factory=list)
    message_id: str | None = None
    subject: str = ""
    from_address: str = ""
    problem: str | None = None
    # X-Relcomm-* headers of the returned message (lowercased names): which send it was about
    relcomm_headers: dict[str, str] = field(default_factory=dict)
    # a calendar reply (kind "rsvp", receipts.itip): the event's UID and the SEQUENCE answered
    calendar_uid: str | None = None
    calendar_sequence: int | None = None


# --------------------------------------------------------------------------- helpers

_ADDR_RE = re.compile(r"[\w!#$%&'*+/=?^`{|}~.\-]+@[\w\-]+(?:\.[\w\-]+)*")
_MSGID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")


def _strip_brackets(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    m = _MSGID_RE.search(value)
    if m:
        return m.group(1)
    value = value.strip("<> \t\r\n")
    return value or None


def _msgids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSGID_RE.findall(value)
    if not found:
        found = [t.strip("<>") for t in value.split() if "@" in t]
    out: list[str] = []
    for f in found:
        if f not in out:
            out.append(f)
    return out


def _raw_items(msg: Message) -> list[tuple[str, str]]:
    """The first MAX_HEADERS header fields as parsed: 8-bit bytes (RFC 6532 UTF-8 headers) still
    surrogates, where msg.get() would give a Header whose text is replacement characters."""
    try:
        return list(itertools.islice(msg.raw_items(), MAX_HEADERS))
    except Exception as exc:
        _tolerate(exc)
        return []


def _header_str(msg: Message, name: str) -> str:
    """Decoded header value as str (RFC 2047 decoded), never raising."""
    name = name.lower()
    value = next((v for k, v in _raw_items(msg) if str(k).lower() == name), None)
    if value is None:
        return ""
    if isinstance(value, str):
        # decode_header is quadratic in encoded words; raw 8-bit (RFC 6532 UTF-8) comes as surrogates
        value = _unescape(value[:MAX_HEADER_CHARS])
    try:
        if isinstance(value, str) and "=?" in value:
            value = str(make_header(decode_header(value)))
        else:
            value = str(value)
    except Exception as exc:
        _tolerate(exc)
        value = str(value)
    return " ".join(value[:MAX_HEADER_CHARS].split())


def _header_values(msg: Message) -> dict[str, str]:
    """First value of every header (lowercased names), decoded and capped, in one pass:
    looking each name up with msg.get() is quadratic in the number of headers."""
    out: dict[str, str] = {}
    for name, value in _raw_items(msg):
        key = str(name).lower()
        if key in out:
            continue
        value = _unescape(str(value)[:MAX_HEADER_CHARS])
        try:
            if "=?" in value:
                value = str(make_header(decode_header(value)))
        except Exception as exc:
            _tolerate(exc)
        out[key] = " ".join(value.split())
    return out


_CONTAINER_RE = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?\"?(?:multipart|message)/")
_BOUNDARY_LINE_RE = re.compile(rb"(?m)^--")


def _limit_structure(raw: bytes) -> tuple[bytes, bool]:
    """Cut the message before its MAX_CONTAINERS+1-th multipart/message declaration and its
    MAX_BOUNDARY_LINES+1-th boundary-like line: the stdlib parser is slow on deep nesting
    (it checks every line against every open boundary) and builds an object per part.
    A report's own parts come first, so what is cut is attached or hostile content."""
    cut = len(raw)
    for pattern, limit in ((_CONTAINER_RE, MAX_CONTAINERS), (_BOUNDARY_LINE_RE, MAX_BOUNDARY_LINES)):
        for n, m in enumerate(pattern.finditer(raw)):
            if n >= limit:
                cut = min(cut, m.start())
                break
    return (raw[:cut], True) if cut < len(raw) else (raw, False)


def _limit_lines(raw: bytes) -> tuple[bytes, bool]:
    """Cut the message after its MAX_LINES-th line. Real messages stay far below (4 MB of 76-column
    lines is 55,000); only a message of very short lines reaches it, and its report comes first."""
    if raw.count(b"\n") <= MAX_LINES:
        return raw, False
    pos = -1
    for _ in range(MAX_LINES):
        pos = raw.find(b"\n", pos + 1)
    return raw[:pos + 1], True


_QUOTED_ADDR_RE = re.compile(r'"[^"\r\n]{1,64}"@[A-Za-z0-9.\-\[\]:]+')


def _bare_address(value: str) -> str:
    """Lowercased bare address out of 'rfc822; <a@b>' or 'Name <a@b>'."""
    if not value:
        return ""
    v = value.strip()
    if ";" in v:
        typ, _, rest = v.partition(";")
        if "@" in rest or typ.strip().lower() in ("rfc822", "utf-8", "x400", "unknown"):
            v = rest.strip()
    q = _QUOTED_ADDR_RE.search(v)
    m = re.search(r"<([^<>]*@[^<>]*)>", v)
    if q and not m:
        return q.group(0).lower()
    if m:
        v = m.group(1)
        # <"local part"@domain>: the quotes belong to the address (RFC 5321 quoted local part)
        q = _QUOTED_ADDR_RE.fullmatch(v.strip())
        if q:
            return q.group(0).lower()
    else:
        m = _ADDR_RE.search(v)
        if m:
            v = m.group(0)
    v = v.strip().strip("<>\"'").rstrip(".,;:)")
    return v.lower()


def _lookup_charset(charset: str) -> codecs.CodecInfo:
    """codecs.lookup, with a NUL in the name a LookupError too (codecs raises ValueError for it)."""
    if "\0" in charset:
        raise LookupError(f"unknown encoding: {charset!r}")
    return codecs.lookup(charset)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    if len(data) > MAX_TEXT_BYTES:
        data = data[:MAX_TEXT_BYTES]
    for cs in (charset, "utf-8"):
        if not cs or "\0" in cs:  # a NUL in a codec name is a ValueError, not a LookupError
            continue
        try:
            return data.decode(cs)
        except (LookupError, UnicodeError):
            continue
    return data.decode("latin-1", errors="replace")


_QP_LINE_END_SPACE_RE = re.compile(r"(?m)[ \t]+(?=\r?$)")


def _qp_payload(part: Message) -> bytes | None:
    """A quoted-printable part decoded after deleting the spaces and tabs at the end of its lines
    (RFC 2045 6.7: an encoder never leaves them, so they were added on the way, and a decoder must
    delete them). The email package keeps them: a soft line break '= ' then stays an '=' and a
    space in the middle of a word, a field name or a status code. None when the part is not a
    quoted-printable text."""
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "quoted-printable":
        return None
    raw = part.get_payload()
    if not isinstance(raw, str):
        return None
    raw = _QP_LINE_END_SPACE_RE.sub("", raw[: 4 * MAX_TEXT_BYTES])
    try:
        data = raw.encode("ascii", "surrogateescape")  # 8-bit bytes kept as surrogates by the parser
    except UnicodeEncodeError:
        data = raw.encode("raw-unicode-escape")
    return quopri.decodestring(data)


def _part_text(part: Message, problems: "_Parts | None" = None) -> str:
    """Decoded text of a non-multipart part, capped."""
    try:
        payload = _qp_payload(part)
        if payload is None:
            payload = part.get_payload(decode=True)
    except Exception as exc:
        _tolerate(exc)
        payload = None
    if payload is None:
        raw = part.get_payload()
        if isinstance(raw, list):
            # message/* parsed into sub-messages: flatten their headers + bodies
            chunks = []
            for sub in raw:
                if isinstance(sub, Message):
                    chunks.append(_flatten(sub))
            return "\n\n".join(chunks)[:MAX_TEXT_BYTES]
        if isinstance(raw, str):
            return raw[:MAX_TEXT_BYTES]
        return ""
    try:
        charset = part.get_content_charset()
    except Exception as exc:
        _tolerate(exc)
        charset = None
    if charset and problems is not None:
        try:
            _lookup_charset(charset)
        except LookupError:
            problems.problem(f"unknown charset {charset[:40]}")
    return _decode_bytes(payload, charset)


def _unescape(value) -> str:
    """Header values parsed from bytes keep raw 8-bit bytes as surrogates: decode them
    as UTF-8 (else Latin-1)."""
    value = str(value)
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        pass
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _flatten(msg: Message) -> str:
    """Headers (and a capped body) of a message as text."""
    lines = []
    try:
        items = msg.raw_items() if hasattr(msg, "raw_items") else msg.items()
        for k, v in list(items)[:MAX_HEADERS]:
            lines.append(f"{k}: {_unescape(str(v)[:MAX_HEADER_CHARS])}")
    except Exception as exc:
        _tolerate(exc)
        pass
    body = ""
    try:
        if not msg.is_multipart():
            # _payload keeps raw 8-bit bytes as surrogates; get_payload() would replace them
            p = getattr(msg, "_payload", None)
            if not isinstance(p, str):
                p = msg.get_payload()
            if isinstance(p, str):
                body = _unescape(p[:MAX_TEXT_BYTES])
    except Exception as exc:
        _tolerate(exc)
        pass
    return "\n".join(lines) + ("\n\n" + body if body else "")


def _field_blocks(text: str) -> list[list[tuple[str, str]]]:
    """Split RFC 822-style field groups separated by blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = []
            continue
        if line[0] in " \t" and cur:
            k, v = cur[-1]
            cur[-1] = (k, v + " " + line.strip())
            continue
        m = re.match(r"([A-Za-z][A-Za-z0-9\-]*)\s*:\s?(.*)$", line)
        if m:
            cur.append((m.group(1).lower(), m.group(2).strip()))
    if cur:
        blocks.append(cur)
    return blocks


def _parse_headers_text(text: str) -> dict[str, str]:
    """First-occurrence header dict from a block of header text."""
    out: dict[str, str] = {}
    blocks = _field_blocks(text)
    if blocks:
        for k, v in blocks[0]:
            out.setdefault(k, v)
    return out


def _norm_status(value: str) -> str:
    m = _STATUS_RE.search(value or "")
    return ".".join(m.groups()) if m else ""


def _trim(text: str, n: int = DIAG_MAX) -> str:
    text = " ".join((text or "").split())
    return text[:n]


# --------------------------------------------------------------------------- MIME walk


@dataclass
class _Parts:
    dsn_texts: list[str] = field(default_factory=list)
    nested_dsn_texts: list[str] = field(default_factory=list)  # DSNs inside attached messages
    mdn_texts: list[str] = field(default_factory=list)
    arf_texts: list[str] = field(default_factory=list)
    original_headers: list[dict[str, str]] = field(default_factory=list)
    original_texts: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # human-readable text of the report
    calendars: list[str] = field(default_factory=list)  # text/calendar, application/ics (receipts.itip)
    report_type: str = ""
    count: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if text not in self.problems and len(self.problems) < 10:
            self.problems.append(text)


_DEFECT_NAMES = {
    "NoBoundaryInMultipartDefect": "multipart without boundary",
    "StartBoundaryNotFoundDefect": "multipart boundary not found",
    "CloseBoundaryNotFoundDefect": "multipart not closed",
    "MultipartInvariantViolationDefect": "broken multipart",
    "MissingHeaderBodySeparatorDefect": "missing header/body separator",
    "InvalidBase64PaddingDefect": "bad base64",
    "InvalidBase64CharactersDefect": "bad base64",
    "InvalidBase64LengthDefect": "bad base64",
    "MisplacedEnvelopeHeaderDefect": "misplaced envelope header",
    "FirstHeaderLineIsContinuationDefect": "bad header continuation",
}


def _walk(msg: Message, parts: _Parts, depth: int = 0, inside_original: bool = False) -> None:
    if parts.count >= MAX_PARTS or depth > 20:
        return
    parts.count += 1
    try:
        ctype = msg.get_content_type().lower()
    except Exception as exc:
        _tolerate(exc)
        ctype = "text/plain"
    for defect in getattr(msg, "defects", None) or []:
        parts.problem(_DEFECT_NAMES.get(type(defect).__name__, type(defect).__name__))
    if ctype == "multipart/report" and not parts.report_type:
        parts.report_type = (msg.get_param("report-type") or "").lower() if hasattr(msg, "get_param") else ""
    if ctype in ("message/delivery-status", "message/global-delivery-status", "text/delivery-status"):
        if not inside_original:
            parts.dsn_texts.append(_part_text(msg))
        elif len(parts.nested_dsn_texts) < 5:
            parts.nested_dsn_texts.append(_part_text(msg))
        return
    if ctype in ("message/disposition-notification", "message/global-disposition-notification"):
        if not inside_original:
            parts.mdn_texts.append(_part_text(msg))
        return
    if ctype == "message/feedback-report":
        if not inside_original:
            parts.arf_texts.append(_part_text(msg))
        return
    if ctype in ("message/rfc822", "message/global", "message/partial"):
        payload = msg.get_payload()
        sub = None
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            sub = payload[0]
        if sub is not None:
            hdrs = {k.lower(): str(v)[:MAX_HEADER_CHARS] for k, v in reversed(sub.items()[:MAX_HEADERS])}
            parts.original_headers.append(hdrs)
            parts.original_texts.append(_flatten(sub))
            # the attached message may itself be a report in disguise; walk it only
            # to find nested originals, never to collect report fields
            _walk(sub, parts, depth + 1, True)
        else:
            text = _part_text(msg)
            parts.original_headers.append(_parse_headers_text(text))
            parts.original_texts.append(text)
        return
    if ctype in ("text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers",
                 "message/global-headers"):
        text = _part_text(msg)
        parts.original_headers.append(_parse_headers_text(text))
        parts.original_texts.append(text)
        return
    if ctype.startswith("multipart/") and not msg.is_multipart():
        # boundary missing or wrong: try the boundary the body really uses, else
        # treat the whole payload as text
        payload = msg.get_payload()
        if isinstance(payload, str) and not inside_original:
            payload = payload[:MAX_RAW_BYTES]
            recovered = _recover_multipart(ctype, payload)
            if recovered is not None:
                _walk(recovered, parts, depth + 1, inside_original)
            else:
                parts.texts.append(payload[:MAX_TEXT_BYTES])
        return
    if msg.is_multipart():
        payload = msg.get_payload()
        if not isinstance(payload, list):
            return
        for sub in payload:
            if isinstance(sub, Message):
                _walk(sub, parts, depth + 1, inside_original)
        return
    if inside_original:
        return
    if ctype in ("text/calendar", "application/ics", "text/x-vcalendar"):
        # a calendar client's answer (receipts.itip); never text for the bounce heuristics
        if len(parts.calendars) < 5:
            parts.calendars.append(_part_text(msg, parts))
        return
    if ctype.startswith("text/") or ctype == "application/json":
        text = _part_text(msg, parts)
        if ctype == "text/html":
            text = bh.html_to_text(text)
        parts.texts.append(text)


def _recover_multipart(ctype: str, payload: str) -> Message | None:
    counts: dict[str, int] = {}
    for m in re.finditer(r"(?m)^--([^\s]{1,200}?)(--)?[ \t]*\r?$", payload[:MAX_TEXT_BYTES * 4]):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    if not counts:
        return None
    boundary = max(counts, key=lambda b: counts[b])
    if counts[boundary] < 2 or '"' in boundary:
        return None
    try:
        sub = email.message_from_string(
            f'Content-Type: {ctype}; boundary="{boundary}"\n\n' + payload, policy=email.policy.compat32
        )
    except Exception as exc:
        _tolerate(exc)
        return None
    if not sub.is_multipart():
        return None
    return sub


# --------------------------------------------------------------------------- report kinds


def _dsn_from_fields(texts: Iterable[str], report: Report, weak: set[int] | None = None,
                     subjects: list[str] | None = None) -> list[RecipientOutcome]:
    """Recipients of DSN field groups. Indexes of recipients whose Diagnostic-Code carries
    no enhanced status code are added to ``weak``."""
    if weak is None:
        weak = set()
    recips: list[RecipientOutcome] = []
    for text in texts:
        for d in _recipient_groups(_field_blocks(text)):
            if "original-envelope-id" in d and not report.envelope_id:
                report.envelope_id = xtext.decode(d["original-envelope-id"].strip()) or None
            if "final-recipient" not in d and "original-recipient" not in d:
                continue
            final = d.get("final-recipient", "")
            orig = d.get("original-recipient", "")
            addr = ""
            otyp = orig.partition(";")[0].strip().lower() if ";" in orig else "rfc822"
            if orig and otyp in ("rfc822", "utf-8"):
                addr = _bare_address(orig)
            if not addr or "@" not in addr:
                addr = _bare_address(final) or addr
            if not addr:
                continue
            action = d.get("action", "").strip().lower().split()[0] if d.get("action", "").strip() else ""
            status = _norm_status(d.get("status", ""))
            diag = d.get("diagnostic-code", "")
            if ";" in diag[:20]:
                diag = diag.split(";", 1)[1]
            # the remote server's own enhanced code (in Diagnostic-Code) is more precise
            # than the reporting MTA's summary in Status
            dstat = _status_in_diagnostic(bh.mask_subjects(diag, subjects or []))
            if dstat and (not status or dstat[0] == status[0] or status.endswith(".0.0")
                          or (dstat[0] in "45" and status[0] in "45")):
                status = dstat
            if action == "deliverable":  # address verification (sendmail -bv) result
                action = "delivered"
            elif action not in _DSN_ACTIONS:
                action = "delayed" if action in ("delay", "deferred", "retrying") else (
                    _action_from_status(status) if status else "failed")
            final_addr = _bare_address(final)
            if orig and _internal(final_addr) and not _internal(addr):
                # "@smtp.example.net:kijitora@server": a source route to an internal host name says
                # where the reporting MTA handed the message on, not which mailbox was addressed
                final_addr = addr
            recips.append(
                RecipientOutcome(
                    address=addr,
                    final_recipient=final_addr,
                    original_recipient=_bare_address(orig),
                    action=action,
                    status=status,
                    diagnostic=_trim(diag),
                )
            )
            if not dstat:
                weak.add(len(recips) - 1)
    return recips


def _internal(address: str) -> bool:
    """An address whose domain is a bare host name (no dot): only meaningful inside one site."""
    domain = address.rpartition("@")[2]
    return "@" in address and "." not in domain and not domain.startswith("[")


_DSN_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_PER_RECIPIENT = {"final-recipient", "original-recipient", "action", "status", "diagnostic-code",
                  "remote-mta", "last-attempt-date", "will-retry-until", "final-log-id"}


def _recipient_groups(blocks: list[list[tuple[str, str]]]) -> Iterable[dict[str, str]]:
    """Field groups, also splitting blocks where a per-recipient field repeats
    (some MTAs forget the blank line between recipients)."""
    for block in blocks:
        d: dict[str, str] = {}
        for k, v in block:
            if k in d and k in _PER_RECIPIENT:
                yield d
                d = {}
            d.setdefault(k, v)
        if d:
            yield d


def _repair_local_less(recips: list[RecipientOutcome], parts: _Parts) -> None:
    """Some MTAs report '@host' as recipient: use the returned message's single To."""
    bad = [r for r in recips if not r.address or r.address.startswith("@") or "@" not in r.address]
    if not bad or len(recips) != 1:
        return
    for hdrs in parts.original_headers:
        tos = [a.lower() for _, a in getaddresses([hdrs.get("to", "")]) if "@" in a]
        if len(tos) == 1:
            bad[0].address = bad[0].final_recipient = tos[0]
            return


def _status_in_diagnostic(diag: str) -> str:
    codes = [".".join(m.groups()) for m in _STATUS_RE.finditer(diag or "")]
    return codes[-1] if codes else ""


def _action_from_status(status: str) -> str:
    if status.startswith("2"):
        return "delivered"
    if status.startswith("4"):
        return "delayed"
    return "failed"


def _mdn_from_fields(texts: Iterable[str], report: Report) -> list[RecipientOutcome]:
    out = []
    for text in texts:
        d: dict[str, str] = {}
        for block in _field_blocks(text):
            for k, v in block:
                d.setdefault(k, v)
        if d.get("original-message-id") and not report.original_message_id:
            report.original_message_id = _strip_brackets(d["original-message-id"])
        disp = d.get("disposition", "")
        dtype = disp.split(";", 1)[1] if ";" in disp else disp
        dtype = dtype.strip().split("/")[0].strip().lower()
        final = d.get("final-recipient", "")
        orig = d.get("original-recipient", "")
        addr = _bare_address(orig) if orig else ""
        if "@" not in addr:
            addr = _bare_address(final)
        out.append(
            RecipientOutcome(
                address=addr or report.from_address,
                final_recipient=_bare_address(final),
                original_recipient=_bare_address(orig),
                action=dtype or "displayed",
                status="",
                diagnostic=_trim(disp),
            )
        )
    return out


def _arf_recipients(texts: list[str], parts: _Parts, report: Report) -> list[RecipientOutcome]:
    addrs: list[str] = []
    ftype = ""
    for text in texts:
        for block in _field_blocks(text):
            for k, v in block:
                if k in ("original-rcpt-to", "removal-recipient"):
                    a = _bare_address(v)
                    if a and a not in addrs:
                        addrs.append(a)
                elif k == "feedback-type" and not ftype:
                    ftype = v.strip().lower()
    if not addrs:
        for hdrs in parts.original_headers:
            for _, a in getaddresses([hdrs.get("to", "")]):
                a = a.strip().lower()
                if "@" in a and a not in addrs:
                    addrs.append(a)
    return [
        RecipientOutcome(address=a, final_recipient=a, action="complained", diagnostic=ftype or "abuse")
        for a in addrs
    ]


def _fill_original_ids(report: Report, parts: _Parts, bodytext: str) -> None:
    for hdrs in parts.original_headers:
        if not report.original_message_id and hdrs.get("message-id"):
            report.original_message_id = _strip_brackets(hdrs["message-id"])
        if not report.envelope_id:
            for key in ("x-envelope-id", "envelope-id"):
                if hdrs.get(key):
                    report.envelope_id = xtext.decode(hdrs[key].strip())
                    break
    if not report.original_message_id and bodytext:
        m = re.search(r"(?im)^[ \t]*(?:>[ \t]*)?Message-ID:[ \t]*<([^<>\s]+@[^<>\s]+)>", bodytext)
        if m:
            report.original_message_id = m.group(1)
    if not report.envelope_id and bodytext:
        m = re.search(r"(?im)^[ \t]*(?:Original-Envelope-Id|X-Envelope-Id|Envelope-Id):[ \t]*(\S+)", bodytext)
        if m:
            report.envelope_id = xtext.decode(m.group(1))


def _relcomm_headers(parts: _Parts) -> dict[str, str]:
    """X-Relcomm-* headers of the returned message(s): correlation checks them (receipts.correlate)."""
    out: dict[str, str] = {}
    for hdrs in parts.original_headers:
        for name, value in hdrs.items():
            if name.startswith("x-relcomm-") and name not in out:
                out[name] = _safe(" ".join(str(value).split())[:200])
    return out


# --------------------------------------------------------------------------- entry points


# Control characters (terminal escapes, NUL) and bidi overrides in a report's text would reach the
# user's terminal and screens through `relcomm status`, `receipts` and the app: a stranger's mail
# must not be able to move the cursor, retitle the window or reorder what a line says.
UNSAFE_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _safe(value):
    if isinstance(value, str):
        return UNSAFE_CHARS_RE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return value


def _sanitized(report: Report) -> Report:
    for name in ("original_message_id", "envelope_id", "in_reply_to", "message_id", "subject", "from_address",
                 "problem", "calendar_uid"):
        setattr(report, name, _safe(getattr(report, name)))
    for r in report.recipients:
        for name in ("address", "final_recipient", "original_recipient", "action", "status", "diagnostic"):
            setattr(r, name, _safe(getattr(r, name)))
    return report


def parse_message(raw: bytes) -> Report:
    """Parse one inbound message. Never raises (but see ``strict``). Its text holds no control characters."""
    try:
        return _sanitized(_parse(raw))
    except RecursionError:
        if strict():  # the structure limits exist so that this cannot happen
            raise
        return Report(kind="none", problem="message nesting too deep")
    except MemoryError:
        if strict():
            raise
        return Report(kind="none", problem="message too large")
    except Exception as exc:
        if strict():
            raise
        return Report(kind="none", problem=f"unparseable message ({type(exc).__name__})")


def _cr_line_ends_to_lf(raw: bytes) -> bytes:
    """A message whose lines end in a bare CR (old Mac mail clients and stores, a CRLF message
    whose LFs a transfer dropped) is read with LF line ends: the email package would take the CRs
    as line breaks in the headers but leave the body one long line, where no report field, status
    or address on its own line can be found. Decided by the majority, so a CR inside a line of
    an otherwise LF or CRLF message is left alone."""
    crs = raw.count(b"\r")
    if not crs:
        return raw
    lfs = raw.count(b"\n")
    if crs - raw.count(b"\r\n") <= lfs:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _parse(raw: bytes) -> Report:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return Report(kind="none", problem="input is not bytes")
    raw = bytes(raw)
    if not raw.strip():
        return Report(kind="none", problem="empty message")
    truncated = len(raw) > MAX_RAW_BYTES
    if truncated:
        raw = raw[:MAX_RAW_BYTES]
    raw = _cr_line_ends_to_lf(raw)
    # what a file may hold before the first header line is no part of the message: a UTF-8 byte order
    # mark (Windows editors) and empty lines (mbox exporters, pasted text); without headers first
    # the email package would read the whole report as a body
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw[:1] in (b"\r", b"\n"):
        raw = raw.lstrip(b"\r\n")
    # mbox "From " line in front of the headers confuses the parser
    if raw.startswith(b"From "):
        nl = raw.find(b"\n")
        raw = raw[nl + 1:] if nl >= 0 else b""
    raw, cut = _limit_structure(raw)
    raw, too_many_lines = _limit_lines(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not msg.keys():
        return Report(kind="none", problem="no headers found")

    report = Report()
    header_problem = None
    for name in ("Subject", "From"):
        raw_value = msg.get(name)
        if isinstance(raw_value, str) and "=?" in raw_value:
            raw_value = raw_value[:MAX_HEADER_CHARS]
            try:
                for _, cs in decode_header(raw_value):
                    if cs:
                        _lookup_charset(cs)
            except Exception as exc:
                _tolerate(exc)
                header_problem = f"undecodable {name} header"
    report.subject = _header_str(msg, "Subject")
    report.from_address = _bare_address(_header_str(msg, "From"))
    report.message_id = _strip_brackets(_header_str(msg, "Message-ID"))
    irt = _msgids(_header_str(msg, "In-Reply-To")) + _msgids(_header_str(msg, "References"))
    seen_ids: list[str] = []
    for i in irt:
        if i not in seen_ids:
            seen_ids.append(i)
    report.in_reply_to = seen_ids

    parts = _Parts()
    _walk(msg, parts)
    bodytext = "\n".join(parts.texts)
    report.relcomm_headers = _relcomm_headers(parts)

    # 1. ARF complaint
    if parts.arf_texts:
        report.kind = "complaint"
        report.recipients = _arf_recipients(parts.arf_texts, parts, report)
        _fill_original_ids(report, parts, bodytext)
        return report

    # 2. Standard DSN
    weak: set[int] = set()
    subjects = bh.subjects_of(report.subject, parts)
    recips = _dsn_from_fields(parts.dsn_texts, report, weak, subjects) if parts.dsn_texts else []
    if not recips and bh.has_dsn_fields(bodytext):
        recips = _dsn_from_fields([bodytext], report, weak, subjects)
    if not recips and parts.nested_dsn_texts and not parts.mdn_texts:
        # a bounce forwarded as an attachment
        recips = _dsn_from_fields(parts.nested_dsn_texts, report, weak, subjects)
    if not recips and ">" in bodytext:
        # a forwarded (quoted) bounce
        unquoted = re.sub(r"(?m)^[ \t]*>[ \t>]?", "", bodytext)
        if bh.has_dsn_fields(unquoted):
            recips = _dsn_from_fields([unquoted], report, weak, subjects)
            bodytext = unquoted
    if recips:
        report.kind = "dsn"
        _repair_local_less(recips, parts)
        bh.enrich_dsn_recipients(recips, bodytext, weak, subjects)
        report.recipients = recips
        _fill_original_ids(report, parts, bodytext)
        return report

    # 3. MDN
    if parts.mdn_texts:
        report.kind = "mdn"
        report.recipients = _mdn_from_fields(parts.mdn_texts, report)
        if not report.original_message_id:
            _fill_original_ids(report, parts, bodytext)
        return report

    # 3b. A calendar client's answer to an invitation (iTIP REPLY)
    if parts.calendars:
        reply = reply_of(parts.calendars)
        if reply is not None:
            report.kind = "rsvp"
            report.calendar_uid = reply.uid
            report.calendar_sequence = reply.sequence
            report.recipients = [RecipientOutcome(address=a.address, final_recipient=a.address, action=a.partstat,
                                                  diagnostic=_trim(a.comment or report.subject)) for a in reply.answers]
            return report

    # 4. JSON notifications (Amazon SES via SNS and similar)
    js = bh.json_notification(bodytext)
    if js is not None:
        kind, recs, omid = js
        report.kind = kind
        report.recipients = [RecipientOutcome(**r) for r in recs]
        report.original_message_id = omid
        return report

    headers = _header_values(msg)
    # 5. complaint in disguise (forwarded spam complaint, unsubscribe requests)
    if bh.looks_like_complaint(headers, report.subject, bodytext, parts):
        report.kind = "complaint"
        report.recipients = _arf_recipients([], parts, report)
        _fill_original_ids(report, parts, bodytext)
        return report

    # 6. A mailing list refused the post (not a member, a loop)
    recs = bh.list_refusal(headers, report.subject, report.from_address, bodytext)
    if recs:
        report.kind = "dsn"
        report.recipients = [RecipientOutcome(**r) for r in recs]
        _fill_original_ids(report, parts, bodytext)
        return report

    # 7. Non-standard bounce
    if bh.looks_like_bounce(headers, report.subject, report.from_address, bodytext, parts):
        recs = bh.extract_bounce_recipients(bodytext, headers, parts, report.from_address)
        if recs:
            report.kind = "dsn"
            report.recipients = [RecipientOutcome(**r) for r in recs]
            _fill_original_ids(report, parts, bodytext)
            return report

    # A delivery report by its own declaration (multipart/report; report-type=delivery-status) whose
    # recipient could not be found is still a delivery report: never an auto-reply (MTAs put
    # "Auto-Submitted: auto-replied" on their bounces) nor a person's reply (some set In-Reply-To).
    if parts.report_type == "delivery-status":
        report.kind = "none"
        report.problem = "a delivery status report that names no recipient"
        _fill_original_ids(report, parts, bodytext)
        return report

    # 8. Auto reply
    if bh.looks_like_auto_reply(headers, report.subject):
        report.kind = "auto-reply"
        addr = report.from_address
        rp = _bare_address(headers.get("return-path", ""))
        if not addr and rp:
            addr = rp
        report.recipients = [RecipientOutcome(address=addr, final_recipient=addr, action="auto-replied",
                                              diagnostic=_trim(report.subject))]
        report.original_message_id = report.in_reply_to[0] if report.in_reply_to else None
        return report

    # 9. Human reply
    if report.in_reply_to:
        report.kind = "reply"
        report.recipients = [RecipientOutcome(address=report.from_address, final_recipient=report.from_address,
                                              action="replied", diagnostic=_trim(report.subject))]
        report.original_message_id = report.in_reply_to[0]
        return report

    report.kind = "none"
    problems = list(parts.problems)
    if header_problem:
        problems.insert(0, header_problem)
    if cut:
        problems.insert(0, "too many nested or separate MIME parts: only the first ones were parsed")
    if too_many_lines:
        problems.insert(0, f"more than {MAX_LINES:,} lines: only the first ones were parsed")
    if truncated:
        problems.insert(0, "message truncated for parsing")
    if problems:
        report.problem = "; ".join(problems[:3])
    return report


def report_to_json(file: str, report: Report) -> dict:
    return {
        "file": file,
        "kind": report.kind,
        "recipients": [
            {"address": r.address, "action": r.action, "status": r.status, "diagnostic": r.diagnostic}
            for r in report.recipients
        ],
        "original_message_id": report.original_message_id,
        "envelope_id": report.envelope_id,
        **({"calendar_uid": report.calendar_uid, "calendar_sequence": report.calendar_sequence}
           if report.kind == "rsvp" else {}),
    }


def dumps(file: str, report: Report) -> str:
    return json.dumps(report_to_json(file, report), ensure_ascii=False)
