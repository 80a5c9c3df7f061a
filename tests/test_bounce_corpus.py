"""Agreement of the receipts parser with the real bounce corpus (shared/corpora/bounces).

Agreement is defined by the corpus README: same verdict (delivered / bounced /
auto-reply / complaint / not a report); for delivered and bounced the same
recipient set (case-insensitive) and every expected status code that appears
literally in the message among the reported statuses.

The disagreements left are pinned, with the evidence, in bounce_corpus_known_disagreements.json
(cases where expected.json is wrong or the message contradicts itself): any new disagreement fails,
and so does a known one that stopped happening (then update the file).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest

from relcomm_tui.receipts.parse import Report, parse_message

from parse_strict import strict_parsing  # noqa: F401  (autouse: unexpected exceptions fail)

REPO_ROOT = Path(__file__).resolve().parents[1]
KNOWN_FILE = Path(__file__).with_name("bounce_corpus_known_disagreements.json")
# 96.42% (404/419) before issue 11; 97.61% (409/419) after, the 10 left pinned in KNOWN_FILE
AGREEMENT_FLOOR = 409 / 419


def known_disagreements() -> dict[str, str]:
    """file name -> the disagreement compare() reports for it."""
    known = json.loads(KNOWN_FILE.read_text())
    known.pop("_about", None)
    for name, entry in known.items():
        assert entry.get("why", "").strip(), f"{KNOWN_FILE.name}: {name} has no reason"
    return {name: entry["disagreement"] for name, entry in known.items()}


def corpus_dir() -> Path | None:
    candidates = []
    env = os.environ.get("RELCOMM_BOUNCE_CORPUS")
    if env:
        candidates.append(Path(env))
    candidates.append(REPO_ROOT.parent / "shared" / "corpora" / "bounces")
    candidates.append(Path("/work/shared/corpora/bounces"))
    for c in candidates:
        if (c / "expected.json").is_file() and (c / "emails").is_dir():
            return c
    return None


def expected_verdict(entries: list[dict]) -> str:
    if not entries:
        return "not-a-report"
    reasons = {e.get("reason", "") for e in entries}
    if reasons == {"delivered"}:
        return "delivered"
    if reasons == {"vacation"}:
        return "auto-reply"
    if reasons == {"feedback"}:
        return "complaint"
    return "bounced"


def report_verdict(report: Report) -> str:
    if report.kind == "dsn":
        actions = {r.action for r in report.recipients}
        if "delivered" in actions:
            return "delivered"
        if actions & {"failed", "delayed"}:
            return "bounced"
        return "not-a-report"
    if report.kind == "auto-reply":
        return "auto-reply"
    if report.kind == "complaint":
        return "complaint"
    return "not-a-report"


def compare(raw: bytes, entries: list[dict], report: Report) -> str | None:
    """None when the report agrees with the expected entries, else a short reason."""
    want = expected_verdict(entries)
    got = report_verdict(report)
    if want != got:
        return f"verdict {got} != {want}"
    if want in ("delivered", "bounced"):
        want_rcpts = {(e.get("recipient") or "").lower() for e in entries}
        # Sisimai names a DSN recipient by its Final-Recipient (the mailbox the reporting
        # MTA last tried); our ``address`` prefers Original-Recipient for correlation,
        # so compare on final_recipient when the report carries one.
        got_rcpts = {(r.final_recipient or r.address).lower() for r in report.recipients}
        if want_rcpts != got_rcpts:
            return f"recipients {sorted(got_rcpts)} != {sorted(want_rcpts)}"
        text = raw.decode("utf-8", "replace")
        statuses = {r.status for r in report.recipients}
        for e in entries:
            st = e.get("status") or ""
            if st and st in text and st not in statuses:
                return f"status {st} not in {sorted(statuses)}"
    return None


def stored_otherwise(raw: bytes, how: str | None) -> bytes:
    """The message as another system would hand it over (None: as it is): with CRLF or bare CR
    line ends, with a space added at the end of every non-empty line (transports do that), or
    saved with a UTF-8 byte order mark and an empty line in front."""
    if how is None:
        return raw
    lf = raw.replace(b"\r\n", b"\n")
    if how == "crlf":
        return lf.replace(b"\n", b"\r\n")
    if how == "cr":
        return lf.replace(b"\n", b"\r")
    if how == "trailing-space":
        return re.sub(rb"(?m)(?<=\S)$", b" ", lf)
    if how == "bom-and-empty-line":
        return b"\xef\xbb\xbf\n" + raw
    raise ValueError(how)


def run_corpus(corpus: Path, how: str | None = None) -> tuple[float, list[tuple[str, str]], int]:
    expected = json.loads((corpus / "expected.json").read_text())
    bad: list[tuple[str, str]] = []
    for name in sorted(expected):
        raw = stored_otherwise((corpus / "emails" / name).read_bytes(), how)
        report = parse_message(raw)
        why = compare(raw, expected[name], report)
        if why:
            bad.append((name, why))
    total = len(expected)
    return (total - len(bad)) / total, bad, total


def test_bounce_corpus_agreement(capsys):
    corpus = corpus_dir()
    if corpus is None:
        pytest.fail(
            "bounce corpus not found: set RELCOMM_BOUNCE_CORPUS, or place shared/corpora/bounces "
            f"beside the repo ({REPO_ROOT.parent / 'shared'}), or at /work/shared/corpora/bounces"
        )
    rate, bad, total = run_corpus(corpus)
    with capsys.disabled():
        print(f"\nbounce corpus agreement: {rate:.2%} ({total - len(bad)}/{total}) from {corpus}")
        for name, why in bad:
            print(f"  DISAGREE {name}: {why}")
    known = known_disagreements()
    got = dict(bad)
    new_ones = {n: w for n, w in got.items() if known.get(n) != w}
    fixed = sorted(set(known) - set(got))
    assert not new_ones, f"new disagreements (fix the parser, never the expectation): {new_ones}"
    assert not fixed, f"these now agree: remove them from {KNOWN_FILE.name} and raise AGREEMENT_FLOOR: {fixed}"
    assert rate >= AGREEMENT_FLOOR, f"agreement {rate:.2%} below {AGREEMENT_FLOOR:.2%}"


@pytest.mark.parametrize("how", ["crlf", "cr", "trailing-space", "bom-and-empty-line"])
def test_the_corpus_stored_otherwise_agrees_the_same(how):
    """The same reports stored with CRLF (Windows, SMTP) or bare CR (old Mac) line ends, with
    spaces a transport added at line ends, or saved with a byte order mark and an empty line in
    front, as real mailboxes and files hold them: the parser must find exactly the same things
    (issue 11.7; before, 280/419 agreed with CR, 3/419 with the byte order mark, and three
    quoted-printable reports changed with the spaces)."""
    corpus = corpus_dir()
    if corpus is None:
        pytest.fail("bounce corpus not found (see test_bounce_corpus_agreement)")
    assert _disagreements(corpus, how) == _disagreements(corpus, None)


@functools.lru_cache(maxsize=None)
def _disagreements(corpus: Path, how: str | None) -> list[tuple[str, str]]:
    return run_corpus(corpus, how)[1]


if __name__ == "__main__":  # pragma: no cover - handy for development
    c = corpus_dir()
    assert c is not None
    r, b, t = run_corpus(c)
    for n, w in b:
        print(n, w)
    print(f"{r:.2%} ({t - len(b)}/{t})")
