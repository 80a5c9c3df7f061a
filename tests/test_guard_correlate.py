"""Correlation details that decide which delivery a report is credited to (issue 15: survivors of
the first mutation run of receipts/correlate.py): address normalising, naive report dates, the
boundary of "dated before", in-memory and ledger lookups, the X-Relcomm-* headers filtering a
match by address, and a Match that keeps its outcome and note."""

from __future__ import annotations

import datetime as dt

import pytest
from test_correlate import dsn, iso, ledger, match_one, news, rfc_date  # noqa: F401  (ledger is a fixture)

from relcomm_tui.receipts.correlate import (
    ADDRESS_ALLOWANCE, BY_ADDRESS, BY_ENVELOPE_ID, BY_MESSAGE_ID, NOT_OURS, Correlator, bare_address, dated_before,
    moment,
)
from relcomm_tui.receipts.parse import parse_message


@pytest.mark.parametrize(("value", "expected"), [
    ("rfc822; <Bob@Example.com>", "bob@example.com"),
    ("rfc822;bob@example.com", "bob@example.com"),
    ("Bob Smith <bob@example.com>", "bob@example.com"),
    ('"bob@example.com"', "bob@example.com"),
    ("'bob@example.com'", "bob@example.com"),
    ("  <BOB@EXAMPLE.COM>  ", "bob@example.com"),
    ("rfc822; bob@example.com", "bob@example.com"),
    (None, ""), ("", ""),
])
def test_bare_address(value, expected):
    assert bare_address(value) == expected


def test_moment_reads_naive_stamps_as_utc_and_keeps_offsets():
    naive = moment("2026-11-27T10:00:00")
    assert naive == dt.datetime(2026, 11, 27, 10, tzinfo=dt.timezone.utc) and naive.tzinfo is dt.timezone.utc
    offset = moment("2026-11-27T12:00:00+02:00")
    assert offset.utcoffset() == dt.timedelta(hours=2) and offset == naive
    assert moment("not a date") is None and moment(None) is None and moment("") is None


def test_dated_before_is_strict_at_the_allowance():
    sent = "2026-11-27T10:00:00+00:00"
    assert not dated_before("2026-11-27T09:59:59+00:00", sent, ADDRESS_ALLOWANCE)  # exactly the allowance
    assert dated_before("2026-11-27T09:59:58.999+00:00", sent, ADDRESS_ALLOWANCE)
    assert not dated_before(None, sent, ADDRESS_ALLOWANCE) and not dated_before("2026-11-27T09:00:00", None,
                                                                                ADDRESS_ALLOWANCE)
    assert dated_before("2026-11-27T09:00:00", sent, ADDRESS_ALLOWANCE)  # naive: read as UTC


def test_this_releases_deliveries_answer_from_memory_without_lookups(ledger):
    deliveries = ledger.deliveries("4.2.0")
    memory = Correlator(deliveries)  # no ledger lookups at all
    bob = news(ledger, "bob@example.com")
    assert memory.by_envelope_id(bob.envelope_id).id == bob.id
    assert memory.by_envelope_id(f"  {bob.envelope_id} ").id == bob.id
    assert memory.by_envelope_id("relcomm.unknown") is None and memory.by_envelope_id(None) is None
    assert memory.by_message_id([None, "", bob.message_id]).id == bob.id  # empty ids are skipped, not the end
    assert memory.by_message_id([bob.message_id.upper()]).id == bob.id
    assert memory.by_message_id(["<nobody@else>"]) is None
    assert [d.id for d in memory.deliveries_to("bob@example.com")] == [bob.id]


def test_other_releases_are_found_through_the_ledger(ledger):
    old = news(ledger, "old@example.com", "4.1.0")
    correlator = Correlator.for_ledger(ledger, "4.2.0")
    assert correlator.by_envelope_id(old.envelope_id).id == old.id
    assert correlator.by_message_id([None, old.message_id]).id == old.id
    bare = old.message_id.strip("<>")
    assert correlator.by_message_id([bare]).id == old.id  # the ledger keeps the brackets; the lookup adds them
    match = match_one(ledger, dsn(envid=old.envelope_id, final="old@example.com"))
    assert (match.delivery.id, match.how) == (old.id, BY_ENVELOPE_ID)
    match = match_one(ledger, dsn(final="old@example.com", headers=f"Message-ID: {old.message_id}\n"))
    assert (match.delivery.id, match.how) == (old.id, BY_MESSAGE_ID)


def test_the_returned_headers_filter_a_match_by_address(ledger):
    carol = news(ledger, "carol@example.com")
    same = "X-Relcomm-Release: 4.2.0\nX-Relcomm-Communique: news\n"
    match = match_one(ledger, dsn(final="carol@example.com", headers=same))
    assert (match.delivery.id, match.how) == (carol.id, BY_ADDRESS)
    other_communique = "X-Relcomm-Release: 4.2.0\nX-Relcomm-Communique: news-reminder\n"
    match = match_one(ledger, dsn(final="carol@example.com", headers=other_communique))
    assert (match.delivery, match.how, match.note) == (None, None, NOT_OURS)


def test_each_address_of_the_report_is_tried_in_turn(ledger):
    carol = news(ledger, "carol@example.com")
    match = match_one(ledger, dsn(original="nobody@example.com", final="carol@example.com"))
    assert (match.delivery.id, match.how) == (carol.id, BY_ADDRESS)
    assert match.outcome.final_recipient.endswith("carol@example.com")


def test_a_match_keeps_its_outcome_and_says_why_it_credits_nothing(ledger):
    report = parse_message(dsn(final="stranger@example.com"))
    [match] = Correlator.for_ledger(ledger, "4.2.0").match(report, iso())
    assert match.outcome is report.recipients[0]
    assert (match.delivery, match.how, match.note, match.verified) == (None, None, NOT_OURS, False)
    carol = news(ledger, "carol@example.com")
    report = parse_message(dsn(final="carol@example.com"))
    [match] = Correlator.for_ledger(ledger, "4.2.0").match(report, iso())
    assert match.outcome is report.recipients[0] and match.delivery.id == carol.id
    report = parse_message(dsn(final="carol@example.com"))
    [match] = Correlator.for_ledger(ledger, "4.2.0").match(report, iso(-dt.timedelta(days=1)))
    assert match.outcome is report.recipients[0] and match.delivery is None and match.note == "dated before it was sent"


# -- the second mutation run's survivors (issue 15) ------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("rfc822; <x;y@example.com>", "x;y@example.com"),   # only the first ";" ends the type
    ("rfc822; Xavier@Example.COM", "xavier@example.com"),
])
def test_bare_address_keeps_what_follows_the_type_whole(value, expected):
    assert bare_address(value) == expected


def test_header_text_folds_whitespace_to_one_space():
    from relcomm_tui.receipts.correlate import header_text

    assert header_text("4.2.0\n\t rc1  ") == "4.2.0 rc1"
    assert header_text("=?utf-8?q?4.2.0-=CE=B2?=") == "4.2.0-β"


@pytest.mark.parametrize(("value", "expected"), [
    ("<A@B.example> (added by a relay)", "a@b.example"),   # the bracketed id, not what is around it
    ("<Truncated@b.example", "truncated@b.example"),        # a cut header: the bracket left is dropped
    ("<X1@b.example", "x1@b.example"),
])
def test_normalize_message_id_takes_the_id_from_its_brackets(value, expected):
    from relcomm_tui.receipts.correlate import normalize_message_id

    assert normalize_message_id(value) == expected


def test_an_address_nobody_was_sent_to_matches_nothing_from_memory(ledger):
    memory = Correlator(ledger.deliveries("4.2.0"))  # no ledger lookups: the in-memory address index
    assert memory.deliveries_to("nobody@example.com") == []
    [match] = memory.match(parse_message(dsn(final="nobody@example.com")), iso())
    assert (match.delivery, match.how, match.note) == (None, None, NOT_OURS)


def test_releases_named_by_the_caller_are_added_to_this_releases(ledger):
    """A report whose returned headers name an earlier release of this ledger is not 'another send'."""
    from relcomm_tui.receipts.correlate import ANOTHER_SEND

    old = news(ledger, "old@example.com", "4.1.0")
    memory = Correlator(ledger.deliveries("4.2.0"), lookup_address=ledger.deliveries_to, releases=["4.1.0"])
    [match] = memory.match(parse_message(dsn(final="old@example.com", headers="X-Relcomm-Release: 4.1.0\n")), iso())
    assert (match.delivery.id, match.how) == (old.id, BY_ADDRESS)
    [match] = memory.match(parse_message(dsn(final="old@example.com", headers="X-Relcomm-Release: 3.0.0\n")), iso())
    assert (match.delivery, match.note) == (None, ANOTHER_SEND)


def test_a_reply_credits_by_in_reply_to_when_it_has_no_original_message_id(ledger):
    bob = news(ledger, "bob@example.com")
    reply = (f"From: Bob <bob@example.com>\nTo: receipts@orion.example.com\nSubject: Re: news\n"
             f"Date: {rfc_date()}\nIn-Reply-To: {bob.message_id}\n\nThanks!\n").encode()
    match = match_one(ledger, reply)
    assert (match.delivery.id, match.how, match.note) == (bob.id, BY_MESSAGE_ID, "")


def test_the_envelope_id_stays_how_a_report_was_credited_when_its_message_id_agrees(ledger):
    carol = news(ledger, "carol@example.com")
    match = match_one(ledger, dsn(envid=carol.envelope_id, final="carol@example.com",
                                  headers=f"Message-ID: {carol.message_id}\n"))
    assert (match.delivery.id, match.how, match.note) == (carol.id, BY_ENVELOPE_ID, "")


def test_a_report_naming_no_recipient_gives_one_empty_outcome(ledger):
    carol = news(ledger, "carol@example.com")
    raw = dsn(envid=carol.envelope_id, final="carol@example.com").replace(
        b"Final-Recipient: rfc822; carol@example.com\nAction: failed\nStatus: 5.1.1\n", b"")
    report = parse_message(raw)
    assert report.recipients == []
    [match] = Correlator.for_ledger(ledger, "4.2.0").match(report, iso())
    assert match.outcome.address == "" and (match.delivery.id, match.how) == (carol.id, BY_ENVELOPE_ID)


def test_a_report_naming_only_an_address_of_an_earlier_release_is_found_through_the_ledger(ledger):
    old = news(ledger, "old@example.com", "4.1.0")  # not in this release's deliveries: only the ledger knows it
    match = match_one(ledger, dsn(final="old@example.com"))
    assert (match.delivery.id, match.how) == (old.id, BY_ADDRESS)


def test_in_reply_to_ids_count_even_when_the_report_has_no_original_message_id(ledger):
    """The parser usually copies the first In-Reply-To id into original_message_id; a report built
    without it (a References-only reply) is still credited by the ids it has."""
    from relcomm_tui.receipts.parse import RecipientOutcome, Report

    bob = news(ledger, "bob@example.com")
    report = Report(kind="reply", recipients=[RecipientOutcome("bob@example.com", action="replied")],
                    original_message_id=None, in_reply_to=["<someone-else@mail.example>", bob.message_id])
    [match] = Correlator.for_ledger(ledger, "4.2.0").match(report, iso())
    # someone else's id beside ours: credited by ours, not turned away as "not ours"
    assert (match.delivery.id, match.how) == (bob.id, BY_MESSAGE_ID)
