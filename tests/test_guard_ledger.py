"""Ledger transitions that must be refused (issue 15): one test per state, on a real SQLite ledger.

The claim (`sending_work`) is covered state by state in test_send_lock.py. Here: "retry failed" /
"resend in doubt" (`requeue`) takes back only deferred, rejected and in-doubt deliveries, never one
that arrived or that the engineer marked delivered; an outcome is never "sending" or a made-up state;
recovery after a crash touches only `sending` rows. Each was seen to fail with the guard loosened
(an extra state in requeue's list, in CLAIMABLE_STATES, in recovery's WHERE).
"""

from __future__ import annotations

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.store.deliveries import CLAIMABLE_STATES
from relcomm_tui.store.ledger import ClaimRefused, DeliveryIntent, Ledger

REQUEUED = [L.DEFERRED, L.REJECTED, L.IN_DOUBT]
NOT_REQUEUED = [L.QUEUED, L.SENDING, L.ACCEPTED, L.MARKED_DELIVERED, L.AWAITING]


def one_delivery(state_dir) -> tuple[Ledger, str]:
    ledger = Ledger.open(state_dir)
    ledger.ensure_deliveries("1.0", [DeliveryIntent("news", "bob@example.com", "Bob <bob@example.com>", "customers",
                                                    "email")], domain="example.com")
    (record,) = ledger.deliveries("1.0")
    return ledger, record.id


def put_in_state(ledger: Ledger, ident: str, state: str) -> None:
    ledger.apply([lambda db: db.execute("UPDATE deliveries SET state=? WHERE id=?", (state, ident))])


@pytest.mark.parametrize("state", NOT_REQUEUED)
def test_requeue_leaves_this_state_alone(tmp_path, state):
    ledger, bob = one_delivery(tmp_path)
    put_in_state(ledger, bob, state)
    before = ledger.delivery(bob)
    assert ledger.requeue([bob]) == 0
    after = ledger.delivery(bob)
    assert (after.state, after.updated, after.attempts) == (state, before.updated, before.attempts)


@pytest.mark.parametrize("state", REQUEUED)
def test_requeue_takes_back_this_state_with_its_message_id(tmp_path, state):
    ledger, bob = one_delivery(tmp_path)
    put_in_state(ledger, bob, state)
    before = ledger.delivery(bob)
    assert ledger.requeue([bob]) == 1
    after = ledger.delivery(bob)
    assert (after.state, after.message_id, after.envelope_id) == (L.QUEUED, before.message_id, before.envelope_id)


def test_marked_delivered_is_never_sent_again_even_after_a_retry(tmp_path):
    """The engineer said it arrived: neither a claim nor "retry failed" may bring it back."""
    ledger, bob = one_delivery(tmp_path)
    ledger.mark_sending([bob])
    ledger.mark_outcome(bob, L.DEFERRED, "451 try later")
    ledger.mark_delivered(bob, "alice", "confirmed by phone")
    assert ledger.requeue([bob]) == 0
    with pytest.raises(ClaimRefused, match="marked delivered"):
        ledger.mark_sending([bob])
    record = ledger.delivery(bob)
    assert record.state == L.MARKED_DELIVERED and record.attempts == 1
    assert record.reply == "marked delivered by alice: confirmed by phone"
    assert ledger.pending("1.0", "news", CLAIMABLE_STATES) == []


@pytest.mark.parametrize("state", [L.SENDING, "delivered", "", "QUEUED"])
def test_an_outcome_is_never_sending_or_a_state_the_ledger_does_not_know(tmp_path, state):
    ledger, bob = one_delivery(tmp_path)
    with pytest.raises(ValueError, match="not an outcome"):
        ledger.mark_outcome(bob, state, "250 ok")
    assert ledger.delivery(bob).state == L.QUEUED


@pytest.mark.parametrize("state", [s for s in L.STATES if s != L.SENDING])
def test_recovery_after_a_crash_touches_only_sending_rows(tmp_path, state):
    ledger = Ledger.open(tmp_path)
    ledger.ensure_deliveries("1.0", [DeliveryIntent("news", f"u{i}@example.com", f"u{i}", None, "email")
                                     for i in range(2)], domain="example.com")
    other, sending = (r.id for r in ledger.deliveries("1.0"))
    put_in_state(ledger, other, state)
    put_in_state(ledger, sending, L.SENDING)
    before = ledger.delivery(other)
    assert ledger.recover_in_doubt() == 1
    assert ledger.delivery(sending).state == L.IN_DOUBT
    after = ledger.delivery(other)
    assert (after.state, after.reply, after.updated) == (state, before.reply, before.updated)


def test_claimable_states_are_exactly_queued_and_deferred():
    # Pinned: widening this list lets a delivery that arrived be sent again.
    assert set(CLAIMABLE_STATES) == {L.QUEUED, L.DEFERRED}


# -- survivors of the first mutation run (issue 15) -----------------------------------------------


def test_a_delivery_is_per_communique_and_keeps_the_member_it_is_for(tmp_path):
    ledger = Ledger.open(tmp_path)
    intents = [DeliveryIntent("news", "bob@example.com", "Bob", "customers", "email"),
               DeliveryIntent("reminder", "bob@example.com", "Bob", "customers", "email"),
               # a follow-up to a corrected address is still for the member whose address bounced
               DeliveryIntent("news", "robert@example.org", "Bob", "customers", "email", person_key=" BOB@Example.com "),
               DeliveryIntent("news", "carol@example.com", "Carol", "customers", "email", person_key="carol@example.com")]
    assert ledger.ensure_deliveries("1.0", intents, domain="example.com") == 4
    by_key = {(d.communique_id, d.recipient_key): d for d in ledger.deliveries("1.0")}
    assert len({d.id for d in by_key.values()}) == 4
    assert by_key[("news", "robert@example.org")].person_key == "bob@example.com"
    assert by_key[("news", "robert@example.org")].person == "bob@example.com"
    assert by_key[("news", "carol@example.com")].person_key is None  # the same as its own key: not stored
    assert by_key[("news", "bob@example.com")].person_key is None


def test_a_refused_claim_says_why_in_words(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    with pytest.raises(ClaimRefused) as caught:
        ledger.mark_sending(["no-such-delivery"])
    assert caught.value.message == "delivery no-such-delivery is not in the ledger; not sending it"
    put_in_state(ledger, bob, L.IN_DOUBT)
    with pytest.raises(ClaimRefused) as caught:
        ledger.mark_sending([bob])
    assert caught.value.message == f"delivery {bob} is in doubt, not queued or deferred; not sending it"
    put_in_state(ledger, bob, "from-a-newer-version")  # a state this version has no words for: shown as it is
    with pytest.raises(ClaimRefused) as caught:
        ledger.mark_sending([bob])
    assert caught.value.message == f"delivery {bob} is from-a-newer-version, not queued or deferred; not sending it"


def test_only_an_accepted_outcome_stamps_accepted_at(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    ledger.mark_sending([bob])
    ledger.mark_outcome(bob, L.REJECTED, "550 no")
    assert ledger.delivery(bob).accepted_at is None and ledger.delivery(bob).sent_at is not None
    ledger.requeue([bob])
    ledger.mark_sending([bob])
    ledger.mark_outcome(bob, L.ACCEPTED, "250 ok")
    record = ledger.delivery(bob)
    assert record.accepted_at is not None and record.attempts == 2 and record.reply == "250 ok"


def test_marked_delivered_without_a_note_says_only_who(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    ledger.mark_delivered(bob, "alice")
    assert ledger.delivery(bob).reply == "marked delivered by alice"


def test_recovery_says_why_a_delivery_is_in_doubt_after_the_servers_words(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    ledger.mark_sending([bob])
    assert ledger.recover_in_doubt() == 1
    assert ledger.delivery(bob).reply == "the sending process stopped before the server's reply was recorded"
    ledger.mark_outcome(bob, L.DEFERRED, "451 later")
    ledger.requeue([bob])
    ledger.mark_sending([bob])
    ledger.recover_in_doubt()
    assert ledger.delivery(bob).reply == "451 later | the sending process stopped before the server's reply was recorded"
