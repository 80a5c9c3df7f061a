"""RFC 3461 xtext: one encoder and decoder for the SMTP client and the receipts parser."""

from __future__ import annotations

import pytest

from relcomm_tui.receipts.parse import parse_message
from relcomm_tui.transport import xtext


@pytest.mark.parametrize("text", ["rel-4.2.0", "café", "a+b=c", "ünïcødé 漢字", "x y\tz", ""])
def test_round_trip(text: str) -> None:
    encoded = xtext.encode(text)
    assert all(33 <= ord(c) <= 126 for c in encoded)
    assert xtext.decode(encoded) == text


def test_encoding_escapes_plus_equals_and_non_ascii() -> None:
    assert xtext.encode("a+b=c é") == "a+2Bb+3Dc+20+C3+A9"


def test_utf8_bytes_decode_to_text_not_mojibake() -> None:
    # Before one copy, the receipts decoder turned each +HH into a code point: "cafÃ©".
    assert xtext.decode("caf+C3+A9") == "café"
    assert xtext.decode("caf+c3+a9") == "café"  # lower-case hex seen in the wild


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert xtext.decode("a+FFb") == "a\ufffdb"


def test_report_envelope_id_with_utf8_is_decoded(tmp_path) -> None:
    report = (
        b"From: MAILER-DAEMON@example.org\r\nTo: ops@example.com\r\nSubject: Undelivered\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\nOriginal-Envelope-Id: caf+C3+A9-1\r\n\r\n"
        b"Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
    )
    assert parse_message(report).envelope_id == "café-1"
