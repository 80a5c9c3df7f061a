"""Hostile calendar replies: truncated, bit-flipped, NUL-ridden, oversized or flooded versions of the
tests/itip fixtures never raise in strict parse mode, and never produce more than a few answers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from relcomm_tui.receipts.itip import MAX_ANSWERS
from relcomm_tui.receipts.parse import KINDS, STRICT_ENV, parse_message

ITIP = Path(__file__).parent / "itip"
FIXTURES = sorted(ITIP.glob("*.eml"))


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")  # an unexpected exception is a bug, not an "unparseable message"


def check(raw: bytes) -> None:
    report = parse_message(raw)
    assert report.kind in KINDS
    assert len(report.recipients) <= max(MAX_ANSWERS, 50)
    for outcome in report.recipients:
        assert not any(ord(c) < 32 for c in outcome.address + outcome.action + outcome.diagnostic)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_fixture_is_an_answer(path: Path):
    report = parse_message(path.read_bytes())
    assert report.kind == "rsvp" and report.calendar_uid and len(report.recipients) == 1
    assert report.recipients[0].action in ("accepted", "tentative", "declined")


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_mutations_never_raise(path: Path):
    raw = path.read_bytes()
    rng = random.Random(path.name)
    for cut in range(0, len(raw), max(1, len(raw) // 60)):
        check(raw[:cut])
    for _ in range(150):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        check(bytes(data))
    check(raw.replace(b"\r\n", b"\r\n\x00", 40))
    check(raw.replace(b"BEGIN:VEVENT", b"BEGIN:VEVENT\r\n" + b"X-PAD:" + b"A" * 300_000))


def test_a_flood_of_attendees_gives_a_few_answers():
    raw = (ITIP / "thunderbird-outlook-compat-declined.eml").read_bytes()
    many = b"".join(b"ATTENDEE;PARTSTAT=ACCEPTED:mailto:a%d@example.com\r\n" % i for i in range(3000))
    report = parse_message(raw.replace(b"BEGIN:VEVENT\r\n", b"BEGIN:VEVENT\r\n" + many, 1))
    assert report.kind == "rsvp" and len(report.recipients) == MAX_ANSWERS


def test_a_terminal_escape_in_an_answer_never_reaches_the_screen():
    raw = (ITIP / "thunderbird-outlook-compat-declined.eml").read_bytes()
    evil = raw.replace(b"SUMMARY:", b"COMMENT:\x1b]0;pwned\x07 see you\r\nSUMMARY:", 1)
    report = parse_message(evil)
    assert report.kind == "rsvp" and "\x1b" not in report.recipients[0].diagnostic
