"""The ledger on a real SQLite file: modes, migrations, states, in-doubt recovery, sign-offs, receipts."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import DeliveryIntent, Ledger, LedgerError


def intents(n: int, communique: str = "news") -> list[DeliveryIntent]:
    return [DeliveryIntent(communique, f"User{i}@Example.com", f"User {i} <user{i}@example.com>", "customers", "email")
            for i in range(n)]


def test_files_are_private_and_schema_is_current(tmp_path):
    state = tmp_path / "state"
    ledger = Ledger.open(state)
    ledger.ensure_deliveries("1.0", intents(1), domain="example.com")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "ledger.sqlite").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state / "ledger.sqlite-wal").st_mode) == 0o600
    assert ledger.schema_version == len(L.MIGRATIONS)
    db = sqlite3.connect(state / "ledger.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "deliveries", "signoffs", "receipts", "seen_messages"} <= tables
    ledger.close()


def test_migrations_run_once_and_newer_schema_is_refused(tmp_path):
    Ledger.open(tmp_path).close()
    again = Ledger.open(tmp_path)  # no "table already exists"
    assert again.schema_version == len(L.MIGRATIONS)
    again.close()
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute(f"PRAGMA user_version={len(L.MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(LedgerError, match="newer relcomm"):
        Ledger.open(tmp_path)


def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "ledger.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(LedgerError) as caught:
        Ledger.open(tmp_path)
    assert "move it aside" in caught.value.hint


def test_one_delivery_per_release_communique_recipient(tmp_path):
    ledger = Ledger.open(tmp_path)
    assert ledger.ensure_deliveries("1.0", intents(3), domain="example.com") == 3
    assert ledger.ensure_deliveries("1.0", intents(3), domain="example.com") == 0
    first = {d.id: d.message_id for d in ledger.deliveries("1.0")}
    assert len(first) == 3
    # Recipient keys are case-folded: the same person is not a new delivery.
    assert ledger.ensure_deliveries("1.0", [DeliveryIntent("news", "user0@example.COM", "x", None, "email")],
                                    domain="example.com") == 0
    assert ledger.ensure_deliveries("1.1", intents(3), domain="example.com") == 3
    assert set(first) & {d.id for d in ledger.deliveries("1.1")} == set()
    # What is sent (ENVID, Message-ID) is random per delivery, not the computable id (issue 10.7).
    for record in ledger.deliveries("1.0"):
        assert record.id not in record.message_id and record.message_id.endswith("@example.com>")
        assert record.envelope_id != record.id and record.envelope_id.startswith(L.ID_PREFIX)


def test_each_state_transition(tmp_path):
    ledger = Ledger.open(tmp_path)
    ledger.ensure_deliveries("1.0", intents(4), domain="example.com")
    a, b, c, d = (r.id for r in ledger.deliveries("1.0"))
    run = ledger.start_run("send", "1.0", "digest")
    ledger.mark_sending([a, b, c, d], run)
    assert {r.state for r in ledger.deliveries("1.0")} == {L.SENDING}
    ledger.mark_outcome(a, L.ACCEPTED, "250 2.0.0 Ok: queued")
    ledger.mark_outcome(b, L.REJECTED, "550 5.1.1 no such user")
    ledger.mark_outcome(c, L.DEFERRED, "451 4.3.0 try later")
    records = {r.id: r for r in ledger.deliveries("1.0")}
    assert records[a].state == L.ACCEPTED and records[a].accepted_at and records[a].attempts == 1
    assert records[b].reply == "550 5.1.1 no such user" and records[b].state_label == "rejected"
    assert records[d].run_id == run
    # An accepted delivery can never be marked sending again.
    with pytest.raises(LedgerError):
        ledger.mark_sending([a])
    # Retry failed: deferred and rejected go back to the queue with their Message-IDs.
    assert ledger.requeue([a, b, c]) == 2
    assert ledger.delivery(b).state == L.QUEUED and ledger.delivery(b).message_id == records[b].message_id
    assert ledger.delivery(a).state == L.ACCEPTED
    ledger.finish_run(run, "stopped")
    (only,) = ledger.runs("1.0")
    assert only.finished and only.mode == "send" and only.who


def test_sending_left_by_a_dead_process_becomes_in_doubt(tmp_path):
    ledger = Ledger.open(tmp_path)
    ledger.ensure_deliveries("1.0", intents(2), domain="example.com")
    a, b = (r.id for r in ledger.deliveries("1.0"))
    ledger.mark_sending([a, b])
    ledger.mark_outcome(a, L.ACCEPTED, "250 ok")
    ledger.close()
    reopened = Ledger.open(tmp_path)
    record = reopened.delivery(b)
    assert record.state == L.IN_DOUBT and record.state_label == "in doubt"
    assert reopened.delivery(a).state == L.ACCEPTED
    assert reopened.counts("1.0")[L.IN_DOUBT] == 1
    # Resending keeps the Message-ID; marking delivered ends it.
    message_id = record.message_id
    assert reopened.requeue([b]) == 1 and reopened.delivery(b).message_id == message_id
    reopened.mark_delivered(b, "alice", "she confirmed by phone")
    assert reopened.delivery(b).state == L.MARKED_DELIVERED


def test_signoffs_are_per_plan_digest(tmp_path):
    ledger = Ledger.open(tmp_path)
    ledger.set_reviewed("1.0", "d1", "customers", True, "alice")
    ledger.set_reviewed("1.0", "d1", "sales", True, "alice")
    ledger.set_reviewed("1.0", "d1", "sales", False, "bob")
    assert ledger.reviewed_groups("1.0", "d1") == {"customers"}
    assert ledger.reviewed_groups("1.0", "d2") == set()  # the plan changed: review again
    assert ledger.reviewed_groups("1.1", "d1") == set()


def test_receipts_count_once(tmp_path):
    ledger = Ledger.open(tmp_path)
    ledger.ensure_deliveries("1.0", intents(1), domain="example.com")
    (record,) = ledger.deliveries("1.0")
    assert ledger.add_receipt("maildir:abc", "dsn", delivery_id=record.id, action="delivered", status="2.0.0")
    assert not ledger.add_receipt("maildir:abc", "dsn", delivery_id=record.id, action="delivered")
    assert len(ledger.receipts(record.id)) == 1
    assert ledger.delivery_by_message_id(record.message_id).id == record.id


def test_a_ledger_from_before_random_ids_keeps_working(tmp_path):
    """A ledger written by the first schema: its sent deliveries keep the ids that went out, its
    unsent ones get random ids, its receipts say how they were matched (issues 10.7, 11.1)."""
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    for statement in L._statements(L.MIGRATIONS[0]):
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    stamp = "2026-11-27T09:00:00.000+00:00"
    rows = {}
    for key, state, attempts in (("sent@example.com", "accepted", 1), ("later@example.com", "queued", 0)):
        ident = L.delivery_id("4.2.0", "news", key)
        rows[key] = (ident, f"<relcomm.{ident}.0badf00d@example.com>")
        db.execute("INSERT INTO deliveries (id, release_version, communique_id, recipient_key, recipient_display, "
                   "group_id, channel, state, attempts, message_id, envelope_id, created, updated) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (ident, "4.2.0", "news", key, key, "customers", "email", state, attempts, rows[key][1], ident,
                    stamp, stamp))
    sent_id = rows["sent@example.com"][0]
    for n, how in enumerate(("envelope-id", "recipient")):
        db.execute("INSERT INTO receipts (delivery_id, source_key, kind, action, at, raw_summary) VALUES (?,?,?,?,?,?)",
                   (sent_id, f"maildir:x|{n}|0", "dsn", "delivered", stamp, f'{{"matched_by": "{how}"}}'))
    db.execute("INSERT INTO receipts (source_key, kind, action, at) VALUES ('maildir:x|9|0', 'dsn', 'failed', ?)",
               (stamp,))
    db.commit()
    db.close()

    # An old ledger carries no owner tag: it is refused until the engineer adopts it (issue 10.10).
    with pytest.raises(L.LedgerRefused):
        Ledger.open(tmp_path)
    with Ledger.open(tmp_path, adopting=True) as ledger:
        ledger.adopt(ledger.adopt_summary())
    with Ledger.open(tmp_path) as ledger:
        assert ledger.schema_version == len(L.MIGRATIONS)
        sent = ledger.delivery(sent_id)
        later = ledger.delivery(rows["later@example.com"][0])
        receipts = ledger.receipts()
        assert ledger.uncredited_reports() == {"": 1}
    assert (sent.envelope_id, sent.message_id, sent.sent_at) == (sent_id, rows["sent@example.com"][1], stamp)
    assert later.envelope_id.startswith(L.ID_PREFIX) and len(later.envelope_id) == len(L.ID_PREFIX) + 32
    assert later.envelope_id != later.id and later.id not in later.message_id
    assert later.message_id.startswith("<relcomm.") and later.message_id.endswith("@example.com>")
    assert later.sent_at is None
    assert [r["matched_by"] for r in receipts] == ["envelope-id", "address", None]
