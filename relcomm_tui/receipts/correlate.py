"""Correlation: which delivery does an inbound report speak about?

A report is matched, per recipient it names, by the strongest evidence it carries:
1. the DSN envelope id (the engine sends each delivery's id as ENVID),
2. the original Message-ID (the report's Original-Message-ID, the returned headers, or the
   In-Reply-To/References of a reply),
3. the recipient address (case-insensitive, Original-Recipient before Final-Recipient)
   among this release's deliveries.
Ids identify a delivery of any release in the ledger; an address only one of this release's.
A report that matches nothing is still returned (delivery None) so it can be kept and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..ledger import DeliveryRecord
from .parse import RecipientOutcome, Report

# How a match was made, strongest first.
BY_ENVELOPE_ID = "envelope-id"
BY_MESSAGE_ID = "message-id"
BY_RECIPIENT = "recipient"


@dataclass(frozen=True)
class Match:
    """One (report, recipient outcome) and the delivery it belongs to, if any."""

    outcome: RecipientOutcome
    delivery: DeliveryRecord | None
    how: str | None  # BY_ENVELOPE_ID, BY_MESSAGE_ID, BY_RECIPIENT, or None when unmatched


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


class Correlator:
    """Matches reports against the ledger's deliveries. Build one per refresh."""

    def __init__(self, release_deliveries: Sequence[DeliveryRecord],
                 lookup_id: Callable[[str], DeliveryRecord | None] | None = None,
                 lookup_message_id: Callable[[str], DeliveryRecord | None] | None = None) -> None:
        # `lookup_*` reach deliveries of earlier releases in the same ledger.
        self._by_id = {d.id: d for d in release_deliveries}
        self._by_message_id = {normalize_message_id(d.message_id): d for d in release_deliveries if d.message_id}
        self._by_recipient: dict[str, list[DeliveryRecord]] = {}
        for delivery in release_deliveries:
            self._by_recipient.setdefault(delivery.recipient_key.lower(), []).append(delivery)
        self._lookup_id = lookup_id
        self._lookup_message_id = lookup_message_id

    def by_envelope_id(self, envelope_id: str | None) -> DeliveryRecord | None:
        if not envelope_id:
            return None
        ident = envelope_id.strip()
        found = self._by_id.get(ident)
        if found is None and self._lookup_id is not None:
            found = self._lookup_id(ident)
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

    def by_recipient(self, outcome: RecipientOutcome) -> DeliveryRecord | None:
        for value in (outcome.original_recipient, outcome.final_recipient, outcome.address):
            address = bare_address(value)
            candidates = self._by_recipient.get(address) if address else None
            if candidates:
                return _likeliest(candidates)
        return None

    def match(self, report: Report) -> list[Match]:
        """One Match per recipient the report names (one with an empty outcome if it names none)."""
        outcomes = report.recipients or [RecipientOutcome(address="")]
        by_envelope = self.by_envelope_id(report.envelope_id)
        by_message = None if by_envelope else self.by_message_id([report.original_message_id, *report.in_reply_to])
        matches = []
        for outcome in outcomes:
            if by_envelope is not None:
                matches.append(Match(outcome, by_envelope, BY_ENVELOPE_ID))
            elif by_message is not None:
                matches.append(Match(outcome, by_message, BY_MESSAGE_ID))
            else:
                delivery = self.by_recipient(outcome)
                matches.append(Match(outcome, delivery, BY_RECIPIENT if delivery else None))
        return matches


def _likeliest(candidates: list[DeliveryRecord]) -> DeliveryRecord:
    """Several communiques reached the same address: mail reports concern an email delivery,
    and the most recently sent one is the likeliest subject."""
    emails = [d for d in candidates if d.channel == "email"] or candidates
    return max(emails, key=lambda d: (d.accepted_at or "", d.updated or ""))
