"""What the ledger holds, as Python values: a delivery, a run, what a send intends; and the ids
relcomm gives each delivery (the ledger's own key, and the random ids that travel in messages)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from .states import STATE_LABELS


def delivery_id(release_version: str, communique_id: str, recipient_key: str) -> str:
    """Stable id of one (release, communique, recipient): the ledger's own key for it.

    Anyone holding the plan can compute it, so it is never sent in a message (issue 10.7): what
    goes out is the delivery's random envelope id and Message-ID (new_envelope_id, new_message_id).
    """
    text = f"{release_version}\x00{communique_id}\x00{recipient_key.strip().lower()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# Identifiers relcomm puts into what it sends start with this, so a report naming one that this
# ledger does not hold is known to be about another send (another ledger, plan folder or state).
ID_PREFIX = "relcomm."


ID_BYTES = 16  # 128 random bits: nobody can guess one, nor compute it from the plan


_LEGACY_ENVELOPE_ID = re.compile(r"[0-9a-f]{20}")


def new_envelope_id() -> str:
    """A delivery's DSN envelope id (ENVID): random, made once, stored, reused by every resend."""
    return ID_PREFIX + secrets.token_hex(ID_BYTES)


def new_message_id(domain: str) -> str:
    """A delivery's Message-ID: random, made once, stored, reused by every resend."""
    return f"<{ID_PREFIX}{secrets.token_hex(ID_BYTES)}@{domain or 'relcomm.invalid'}>"


def is_relcomm_envelope_id(value: str | None) -> bool:
    """An ENVID relcomm makes (or made before ids were random: 20 hex digits of delivery_id)."""
    text = (value or "").strip().lower()
    return text.startswith(ID_PREFIX) or bool(_LEGACY_ENVELOPE_ID.fullmatch(text))


def is_legacy_envelope_id(value: str | None) -> bool:
    """An ENVID from before ids were random: computable from the plan, so it proves nothing."""
    return bool(_LEGACY_ENVELOPE_ID.fullmatch((value or "").strip().lower()))


def is_relcomm_message_id(value: str | None) -> bool:
    """A Message-ID relcomm makes: `<relcomm.…@domain>` (old ones had the same start)."""
    text = (value or "").strip().strip("<>").strip().lower()
    return text.startswith(ID_PREFIX) and "@" in text


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    release_version: str
    communique_id: str
    recipient_key: str
    recipient_display: str
    group_id: str | None
    channel: str
    state: str
    attempts: int
    message_id: str | None
    envelope_id: str | None
    reply: str | None          # the server's words (or the error) for the last attempt
    created: str
    updated: str
    accepted_at: str | None
    run_id: int | None
    sent_at: str | None = None      # when its text first went out (the first `sending`); None: never
    person_key: str | None = None   # the plan member it is for, when not recipient_key (a corrected address)

    @property
    def person(self) -> str:
        """Who this delivery is for: the plan member's key (a follow-up to a corrected address
        is still for the member whose address bounced)."""
        return self.person_key or self.recipient_key

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__} | {"state_label": self.state_label}


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    started: str
    finished: str | None
    who: str
    host: str
    mode: str
    release_version: str
    plan_digest: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class DeliveryIntent:
    """What the engine wants recorded for one delivery before it exists (ensure_deliveries)."""

    communique_id: str
    recipient_key: str
    recipient_display: str
    group_id: str | None
    channel: str
    person_key: str | None = None  # the plan member, when the address is a correction of theirs


_DELIVERY_COLUMNS = (
    "id, release_version, communique_id, recipient_key, recipient_display, group_id, channel, state, attempts, "
    "message_id, envelope_id, reply, created, updated, accepted_at, run_id, sent_at, person_key"
)


_RECEIPT_COLUMNS = ("id", "delivery_id", "source_key", "kind", "action", "status", "diagnostic", "at", "raw_summary",
                    "matched_by", "note")
