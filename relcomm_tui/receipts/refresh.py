"""Refresh: read the plan's receipt sources incrementally, parse, correlate, record receipts.

Each source is read for messages not seen before (the ledger remembers every source key), so a
refresh of a big mailbox only opens what is new. Every recipient outcome of a report becomes one
receipt row keyed by (source, message key, index): re-reading a message can never count twice,
even if a crash came between storing receipts and remembering the keys (both happen in one
transaction anyway).

A report also counts once whatever its source's keys say (issue 11.2): an IMAP mailbox rebuilt
with a new UIDVALIDITY, a Maildir message copied twice, an mbox copied elsewhere, the same mailbox
read over IMAP and as a Maildir. Each report has a content key (report_key): its Message-ID with
the identifiers it carries, else a digest of the message without the trace headers delivery adds;
a key already in the ledger makes the message a duplicate, read and remembered but not counted.

How each report is credited (by id, by address only, to another send, to nothing) is
receipts.correlate's; every outcome is kept, with how it matched and why not, and counted.

Blocking (files, IMAP): the app calls `refresh` from a worker thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterator, Protocol

from ..plan import secrets
from ..plan.model import Plan
from ..plan.schema import ImapSourceTable, MaildirSourceTable, MboxSourceTable
from ..store.ledger import Ledger
from .correlate import ANOTHER_SEND, CLOCK_ALLOWANCE, Correlator, normalize_message_id
from .parse import Report, parse_message
from .sources import ImapSource, InboundMessage, MaildirSource, MboxSource

log = logging.getLogger(__name__)

BATCH = 500  # messages recorded per transaction: progress survives a crash, fsyncs stay few


class Source(Protocol):
    count_opened: int

    def read_new(self, seen: Callable[[str], bool]) -> Iterator[InboundMessage]: ...


@dataclass(frozen=True)
class SourceProblem:
    """A source that could not be read this time; the others still were."""

    source: str
    message: str
    hint: str = ""


@dataclass
class RefreshResult:
    read: int = 0                 # messages opened this refresh (only new ones)
    reports: int = 0              # of those, understood as reports (any kind but "none")
    new_receipts: int = 0         # receipt rows added
    matched: int = 0              # new reports credited to a delivery by its identifiers
    unverified: int = 0           # new reports tied to a delivery by address only (never decide a fate)
    other_send: int = 0           # new reports about another send (another ledger, plan folder, wiped state)
    unmatched: int = 0            # new reports credited to nothing here (not ours, too old, ambiguous)
    duplicates: int = 0           # messages that were a copy of a report already read (any source)
    ignored: int = 0              # messages that were no report at all
    skipped: list[str] = field(default_factory=list)   # why broken messages were skipped
    problems: list[SourceProblem] = field(default_factory=list)
    per_source: dict[str, int] = field(default_factory=dict)  # source label -> messages read
    unmatched_total: int = 0      # reports in the ledger that matched no delivery, all refreshes
    other_send_total: int = 0     # of those, about another send

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ConfiguredSource:
    """One entry of plan.receipts.sources, resolved: a stable id for the ledger, a label, a reader."""

    id: str
    label: str
    open: Callable[[], Source]


def plan_sources(plan: Plan, *, password_for: Callable[[ImapSourceTable], str] | None = None) -> list[ConfiguredSource]:
    """The plan's sources with paths resolved against the plan folder (`~` expanded)."""
    result = []
    for entry in plan.receipts.sources:
        if isinstance(entry, MaildirSourceTable):
            path = _resolve(plan, entry.maildir)
            result.append(ConfiguredSource(f"maildir:{path}", f"Maildir {path}", lambda p=path: MaildirSource(p)))
        elif isinstance(entry, MboxSourceTable):
            path = _resolve(plan, entry.mbox)
            result.append(ConfiguredSource(f"mbox:{path}", f"mbox {path}", lambda p=path: MboxSource(p)))
        elif isinstance(entry, ImapSourceTable):
            get_password = password_for or imap_password
            result.append(ConfiguredSource(f"imap:{entry.imap}", f"IMAP {entry.imap}",
                                           lambda e=entry, get=get_password: ImapSource(e.imap, get(e))))
    return result


def imap_password(entry: ImapSourceTable) -> str:
    """The IMAP password from its secret reference (blocking: keyring, command)."""

    if entry.password is None:
        raise secrets.SecretError(f"no password for {entry.imap}",
                                  'add password = { env = "VAR" } (or keyring/command) to the source')
    if isinstance(entry.password, str):
        return entry.password
    return secrets.resolve(entry.password)


def _resolve(plan: Plan, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (plan.root / path)


_DATE_RE = re.compile(rb"^Date:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.I | re.M)


def report_time(raw: bytes) -> str | None:
    """The report's Date header as UTC ISO text (the ledger's format), if it has a sane one.
    A regex over the header block: a second full parse of every message would cost a fifth of a refresh."""
    head = raw[:65536]
    end = head.find(b"\n\n")
    if end < 0:
        end = head.find(b"\r\n\r\n")
    found = _DATE_RE.search(head[:end] if end > 0 else head)
    if not found:
        return None
    try:
        when = parsedate_to_datetime(" ".join(found.group(1).decode("ascii", "replace").split()))
    except (TypeError, ValueError, IndexError):  # a broken Date: the time of reading is the best we know
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


def unmatched_reports(ledger: Ledger) -> int:
    """Reports (messages, not rows) in the ledger that matched no delivery."""
    return len({key.rsplit("|", 1)[0] for key in ledger.unmatched_receipt_keys()})


# Header fields a delivery agent, an MUA or a mailbox format adds or changes on the way into a
# mailbox: two copies of one report differ in these only.
_TRACE_FIELDS = frozenset({
    b"return-path", b"delivered-to", b"x-original-to", b"received", b"status", b"x-status", b"x-keywords",
    b"x-uid", b"x-imap", b"x-imapbase", b"content-length", b"lines", b"x-mozilla-status", b"x-mozilla-status2",
    b"x-mozilla-keys", b"x-spam-status", b"x-spam-checker-version", b"x-spam-level", b"x-spam-flag",
})
_FIELD_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def report_key(report: Report, raw: bytes) -> str:
    """The content key of a report, the same for every copy of it wherever it was read from.

    With a Message-ID: that id plus the identifiers the report carries, so a stranger's message
    reusing a real report's Message-ID cannot make relcomm skip the real one (it would need the
    delivery's random ids too). Without: a digest of the message minus its trace fields."""
    if report.message_id:
        ids = [normalize_message_id(report.message_id), (report.envelope_id or "").strip(),
               normalize_message_id(report.original_message_id), *(normalize_message_id(v) for v in report.in_reply_to)]
        return "mid:" + hashlib.sha256("\x00".join(ids).encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return "raw:" + hashlib.sha256(_without_trace(raw)).hexdigest()[:40]


def _without_trace(raw: bytes) -> bytes:
    text = raw.replace(b"\r\n", b"\n")
    head, sep, body = text.partition(b"\n\n")
    kept: list[bytes] = []
    keep = True
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        name = _FIELD_NAME_RE.match(line)
        keep = not (name and name.group(1).lower() in _TRACE_FIELDS) and not line.startswith(b"From ")
        if keep:
            kept.append(line)
    return b"\n".join(kept) + sep + body.rstrip(b"\n")


def refresh(plan: Plan, ledger: Ledger, *, sources: list[ConfiguredSource] | None = None,
            password_for: Callable[[ImapSourceTable], str] | None = None,
            on_progress: Callable[[RefreshResult], None] | None = None) -> RefreshResult:
    """Read every source's new messages and record what they say. Never raises for a bad
    source or message: problems come back in the result."""
    result = RefreshResult()
    correlator = Correlator.for_ledger(ledger, plan.release.version)
    for configured in sources if sources is not None else plan_sources(plan, password_for=password_for):
        try:
            _refresh_source(configured, ledger, correlator, result, on_progress)
        except Exception as error:  # a source we cannot read must not hide the others
            message = getattr(error, "message", None) or _words(error)
            result.problems.append(SourceProblem(configured.label, f"cannot read {configured.label}: {message}",
                                                 getattr(error, "hint", "") or _hint_for(error)))
    uncredited = ledger.uncredited_reports()
    result.unmatched_total = sum(uncredited.values())
    result.other_send_total = uncredited.get(ANOTHER_SEND, 0)
    return result


def _words(error: Exception) -> str:
    """imaplib puts the server's bytes in its errors: show them as text."""
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in error.args]
    return " ".join(p for p in parts if p) or type(error).__name__


def _hint_for(error: Exception) -> str:
    if isinstance(error, imaplib.IMAP4.error) and "auth" in _words(error).lower():
        return "check the user in the imap URL and the password reference in [receipts] sources"
    if isinstance(error, ConnectionError | OSError):
        return "check the host, port and network; the next refresh tries again"
    return "the next refresh tries again"


def _refresh_source(configured: ConfiguredSource, ledger: Ledger, correlator: Correlator,
                    result: RefreshResult, on_progress: Callable[[RefreshResult], None] | None) -> None:
    source = configured.open()
    seen = ledger.seen_keys(configured.id)
    keys: list[str] = []
    rows: list[dict] = []
    reports: dict[str, str] = {}  # content key -> message key, of this batch (not yet in the ledger)

    def flush() -> None:
        if keys:
            result.new_receipts += ledger.record_inbound(configured.id, keys, rows, list(reports.items()))
            keys.clear()
            rows.clear()
            reports.clear()
            if on_progress is not None:
                on_progress(result)

    read_before = source.count_opened
    try:
        for message in source.read_new(seen.__contains__):
            keys.append(message.key)
            rows.extend(_receipt_rows(configured.id, message, correlator, result, ledger, reports))
            if len(keys) >= BATCH:
                flush()
    finally:
        # What was read before a failure is recorded, so the next refresh does not redo it.
        flush()
        result.read += source.count_opened - read_before
        result.per_source[configured.label] = result.per_source.get(configured.label, 0) + source.count_opened - read_before


def _receipt_rows(source_id: str, message: InboundMessage, correlator: Correlator, result: RefreshResult,
                  ledger: Ledger, batch: dict[str, str]) -> list[dict]:
    report = parse_message(message.raw)
    if report.kind == "none":
        result.ignored += 1
        if report.problem:
            reason = f"{source_id} {message.key}: {report.problem}"
            result.skipped.append(reason)
            log.info("receipt source message skipped: %s", reason)
        return []
    key = report_key(report, message.raw)
    if key in batch or ledger.report_known(key):
        result.duplicates += 1
        return []
    batch[key] = message.key
    result.reports += 1
    at = report_time(message.raw)
    # A report cannot come from the future: a date ahead of now (beyond clock skew) would let it
    # outrank every later report of the same delivery. It is taken as read now.
    read_at = dt.datetime.now(dt.timezone.utc)
    if at is not None and at > (read_at + CLOCK_ALLOWANCE).isoformat(timespec="milliseconds"):
        at = read_at.isoformat(timespec="milliseconds")
    matches = correlator.match(report, at)
    if any(m.verified for m in matches):
        result.matched += 1
    elif any(m.delivery is not None for m in matches):
        result.unverified += 1
    elif any(m.note == ANOTHER_SEND for m in matches):
        result.other_send += 1
    else:
        result.unmatched += 1
    rows = []
    for index, match in enumerate(matches):
        outcome = match.outcome
        rows.append({
            "source_key": f"{source_id}|{message.key}|{index}",
            "kind": report.kind,
            "delivery_id": match.delivery.id if match.delivery else None,
            "action": outcome.action or None,
            "status": outcome.status or None,
            "diagnostic": outcome.diagnostic or None,
            "at": at,
            "matched_by": match.how,
            "note": match.note or None,
            "raw_summary": json.dumps({
                "subject": report.subject[:200], "from": report.from_address,
                "address": outcome.address, "matched_by": match.how,
                "original_message_id": report.original_message_id, "envelope_id": report.envelope_id,
                "report_key": key,
            }),
        })
    return rows
