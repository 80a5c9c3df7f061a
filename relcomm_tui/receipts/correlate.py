"""Correlation: which delivery does an inbound report speak about, and can we believe it?

Anyone can mail the receipts inbox, and several sends (two plan folders, a wiped state folder, an
earlier release) may share it. So a report is credited only by the identifiers relcomm itself put
into the message, which are random per delivery and stored in the ledger (ledger.new_envelope_id,
new_message_id): nobody can compute them from the plan. The rules, per report:

1. **Identifiers.** The report's DSN envelope id (Original-Envelope-Id), the original Message-ID
   (its Original-Message-ID field, the returned headers, or a reply's In-Reply-To/References) and
   the X-Relcomm-Release / X-Relcomm-Communique headers of the returned message.
   - All ids found in this ledger name one delivery: the report is about it (`envelope-id` or
     `message-id`), unless the returned X-Relcomm-* headers name another release or communique.
   - An id in relcomm's shape (`relcomm.…`) that this ledger does not hold, ids naming two
     different deliveries, or X-Relcomm-* headers naming a release this ledger never sent: the
     report is about **another send**. It is kept, never credited here, and counted as such.
   - Ids that are not relcomm's (someone else's message bounced): matched to nothing.
   - An envelope id from before ids were random (20 hex digits, computable from the plan) proves
     nothing on its own: alone, it only counts as a match by address (unverified).
2. **Time.** A report dated before its delivery was sent is never credited (a clock allowance of
   CLOCK_ALLOWANCE covers a remote server's slightly wrong clock; a report cannot hold the random id
   before the message went out).
3. **Address only.** A report with no identifier at all (some MTAs strip everything) is matched by
   its recipient address (Original-Recipient, then Final-Recipient) only when exactly one email
   delivery in this ledger, of any release, went to that address before the report's date (and
   agrees with any X-Relcomm-* header). It is then `address`: unverified, shown with the reason,
   and never on its own makes a recipient confirmed, delivered or bounced (receipts.status).

A report that is credited to nothing is still returned (delivery None, with a `note` saying why)
so it can be kept and counted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from ..store.ledger import DeliveryRecord, is_legacy_envelope_id, is_relcomm_envelope_id, is_relcomm_message_id
from . import itip
from .parse import RecipientOutcome, Report

if TYPE_CHECKING:
    from ..store.ledger import Ledger

# How a match was made, strongest first. Only the first two (and "ledger": recorded first hand,
# e.g. a manual step ticked in relcomm) are verified; the others never decide a fate alone.
BY_ENVELOPE_ID = "envelope-id"
BY_MESSAGE_ID = "message-id"
BY_LEGACY_ENVELOPE_ID = "legacy-envelope-id"
BY_ADDRESS = "address"
BY_RECIPIENT = BY_ADDRESS  # the name before matches by address were marked unverified
BY_CALENDAR_UID = "calendar-uid"  # a calendar reply: the event's random UID and an invited attendee (receipts.itip)
VERIFIED = frozenset({BY_ENVELOPE_ID, BY_MESSAGE_ID, BY_CALENDAR_UID, "ledger"})
UNVERIFIED_REASONS = {
    BY_ADDRESS: "matched by address only",
    BY_LEGACY_ENVELOPE_ID: "matched by an old, guessable envelope id only",
}

# Why a report was credited to no delivery (the receipt's note).
ANOTHER_SEND = "another send"
BEFORE_SENT = "dated before it was sent"
AMBIGUOUS = "several deliveries fit"
NOT_OURS = ""

# A report holding a delivery's random id cannot be older than the delivery; one that says so
# has a wrong clock. This much skew is forgiven; more is not credited.
CLOCK_ALLOWANCE = dt.timedelta(minutes=2)
# By address, nothing proves the report is younger than the send: only its Date's missing
# fraction of a second is forgiven.
ADDRESS_ALLOWANCE = dt.timedelta(seconds=1)


def is_verified(how: str | None) -> bool:
    return how in VERIFIED


@dataclass(frozen=True)
class Match:
    """One (report, recipient outcome) and the delivery it is credited to, if any."""

    outcome: RecipientOutcome
    delivery: DeliveryRecord | None
    how: str | None   # BY_ENVELOPE_ID, BY_MESSAGE_ID, BY_ADDRESS, BY_LEGACY_ENVELOPE_ID; None when not credited
    note: str = ""    # when not credited: ANOTHER_SEND, BEFORE_SENT, AMBIGUOUS or NOT_OURS

    @property
    def verified(self) -> bool:
        return is_verified(self.how)


def normalize_message_id(value: str | None) -> str:
    """`<A@b>`, `a@b` and ` <a@B> ` all compare equal."""
    if not value:
        return ""
    found = re.search(r"<([^<>]+)>", value)
    text = found.group(1) if found else value
    return text.strip().strip("<>").strip().lower()


def bare_address(value: str | None) -> str:
    """`rfc822; <Bob@Example.com>` -> `bob@example.com`."""
    if not value:
        return ""
    text = value.strip()
    if ";" in text:
        text = text.partition(";")[2]
    found = re.search(r"<([^<>]*@[^<>]*)>", text)
    if found:
        text = found.group(1)
    return text.strip().strip("<>\"' ").lower()


def header_text(value: str | None) -> str:
    """A returned header's value as sent: RFC 2047 words decoded (a release version "4.2.0-β" comes
    back as =?utf-8?...?=), whitespace folded."""
    if not value:
        return ""
    try:
        value = str(make_header(decode_header(value))) if "=?" in value else value
    except Exception:  # a broken encoded word: compare it as it is
        pass
    return " ".join(value.split())


def moment(stamp: str | None) -> dt.datetime | None:
    """Ledger/report UTC ISO text as an aware datetime (None when absent or unreadable)."""
    if not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def dated_before(report_at: str | None, sent_at: str | None, allowance: dt.timedelta) -> bool:
    """Whether a report dated `report_at` is older than a send at `sent_at` (beyond `allowance`).
    A report without a usable date is taken as read now, so never older."""
    report, sent = moment(report_at), moment(sent_at)
    return report is not None and sent is not None and report + allowance < sent


class Correlator:
    """Matches reports against one ledger's deliveries. Build one per refresh (for_ledger)."""

    def __init__(self, release_deliveries: Sequence[DeliveryRecord],
                 lookup_envelope_id: Callable[[str], DeliveryRecord | None] | None = None,
                 lookup_message_id: Callable[[str], DeliveryRecord | None] | None = None,
                 lookup_address: Callable[[str], list[DeliveryRecord]] | None = None,
                 releases: Iterable[str] = (),
                 lookup_invitation: Callable[[str], tuple[list, list]] | None = None) -> None:
        # This release's deliveries answer from memory; `lookup_*` reach the rest of the ledger.
        self._by_envelope_id = {d.envelope_id: d for d in release_deliveries if d.envelope_id}
        self._by_message_id = {normalize_message_id(d.message_id): d for d in release_deliveries if d.message_id}
        self._lookup_envelope_id = lookup_envelope_id
        self._lookup_message_id = lookup_message_id
        if lookup_address is None:
            by_address: dict[str, list[DeliveryRecord]] = {}
            for delivery in release_deliveries:
                by_address.setdefault(delivery.recipient_key.lower(), []).append(delivery)
            lookup_address = lambda address: by_address.get(address, [])  # noqa: E731
        self._lookup_address = lookup_address
        self._address_cache: dict[str, list[DeliveryRecord]] = {}
        self._releases = set(releases) | {d.release_version for d in release_deliveries}
        self._lookup_invitation = lookup_invitation  # calendar replies: uid -> (versions, deliveries)

    @classmethod
    def for_ledger(cls, ledger: "Ledger", release_version: str) -> "Correlator":
        return cls(ledger.deliveries(release_version), ledger.delivery_by_envelope_id, ledger.delivery_by_message_id,
                   ledger.deliveries_to, ledger.releases(), itip.lookup(ledger))

    def by_envelope_id(self, envelope_id: str | None) -> DeliveryRecord | None:
        if not envelope_id:
            return None
        ident = envelope_id.strip()
        found = self._by_envelope_id.get(ident)
        if found is None and self._lookup_envelope_id is not None:
            found = self._lookup_envelope_id(ident)
        return found

    def by_message_id(self, message_ids: Iterable[str | None]) -> DeliveryRecord | None:
        for value in message_ids:
            key = normalize_message_id(value)
            if not key:
                continue
            found = self._by_message_id.get(key)
            if found is None and self._lookup_message_id is not None:
                # The ledger stores the Message-ID exactly as sent, with its brackets.
                found = self._lookup_message_id(f"<{key}>")
            if found is not None:
                return found
        return None

    def deliveries_to(self, address: str) -> list[DeliveryRecord]:
        if address not in self._address_cache:
            self._address_cache[address] = list(self._lookup_address(address))
        return self._address_cache[address]

    def match(self, report: Report, at: str | None = None) -> list[Match]:
        """One Match per recipient the report names (one with an empty outcome if it names none).
        `at`: the report's date (UTC ISO text), None when it has none."""
        if report.kind == "rsvp":  # credited by the event's UID and the attendee, never by address alone
            return itip.match(report, at, self._lookup_invitation)
        outcomes = report.recipients or [RecipientOutcome(address="")]
        by_ids = self._by_identifiers(report, at)
        if by_ids is not None:
            delivery, how, note = by_ids
            return [Match(outcome, delivery, how, note) for outcome in outcomes]
        return [self._by_address(outcome, report, at) for outcome in outcomes]

    def _by_identifiers(self, report: Report, at: str | None) -> tuple[DeliveryRecord | None, str | None, str] | None:
        """(delivery, how, note) decided by the report's identifiers; None when it carries none."""
        found: dict[str, tuple[DeliveryRecord, str]] = {}
        another_send = False
        foreign = False
        envelope_id = (report.envelope_id or "").strip()
        if envelope_id:
            delivery = self.by_envelope_id(envelope_id)
            if delivery is not None:
                legacy = is_legacy_envelope_id(envelope_id)
                found[delivery.id] = (delivery, BY_LEGACY_ENVELOPE_ID if legacy else BY_ENVELOPE_ID)
            elif is_relcomm_envelope_id(envelope_id):
                another_send = True
            else:
                foreign = True
        for value in dict.fromkeys(normalize_message_id(v) for v in (report.original_message_id, *report.in_reply_to)):
            if not value:
                continue
            delivery = self.by_message_id([value])
            if delivery is not None:
                if found.get(delivery.id, (None, BY_LEGACY_ENVELOPE_ID))[1] == BY_LEGACY_ENVELOPE_ID:
                    found[delivery.id] = (delivery, BY_MESSAGE_ID)
            elif is_relcomm_message_id(value):
                another_send = True
            else:
                foreign = True
        release, communique = _returned_send(report)
        if another_send or len(found) > 1:
            return None, None, ANOTHER_SEND
        if found:
            delivery, how = next(iter(found.values()))
            if (release and release != delivery.release_version) or (communique and communique != delivery.communique_id):
                return None, None, ANOTHER_SEND
            if delivery.sent_at is None or dated_before(at, delivery.sent_at, CLOCK_ALLOWANCE):
                return None, None, BEFORE_SENT
            return delivery, how, ""
        if release and release not in self._releases:
            return None, None, ANOTHER_SEND
        if foreign:
            return None, None, NOT_OURS  # about someone else's message
        return None

    def _by_address(self, outcome: RecipientOutcome, report: Report, at: str | None) -> Match:
        release, communique = _returned_send(report)
        for value in (outcome.original_recipient, outcome.final_recipient, outcome.address):
            address = bare_address(value)
            if not address:
                continue
            candidates = [d for d in self.deliveries_to(address)
                          if d.channel == "email" and d.sent_at is not None
                          and (not release or d.release_version == release)
                          and (not communique or d.communique_id == communique)]
            if not candidates:
                continue
            fitting = [d for d in candidates if not dated_before(at, d.sent_at, ADDRESS_ALLOWANCE)]
            if len(fitting) == 1:
                return Match(outcome, fitting[0], BY_ADDRESS)
            return Match(outcome, None, None, AMBIGUOUS if fitting else BEFORE_SENT)
        return Match(outcome, None, None, NOT_OURS)


def _returned_send(report: Report) -> tuple[str, str]:
    """(release, communique) named by the returned message's X-Relcomm-* headers ("" when absent)."""
    headers = report.relcomm_headers or {}
    return header_text(headers.get("x-relcomm-release")), header_text(headers.get("x-relcomm-communique"))
