"""Issue 13: a bounced address fixed by hand gets the same communique again, at the corrected
address, recorded as a correction of the original, never twice; through a real loopback SMTP server
that writes real delivery reports. Headless (`relcomm send --resend-to OLD=NEW`) and the core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receipts_helpers import write_plan
from relcomm_tui.commands.main import main
from relcomm_tui.receipts.corrections import CorrectionError, prepare_corrections
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import Ledger, delivery_id

BOB, FIXED = "bob.unknown@example.com", "bob@example.com"


@pytest.fixture
def bounced(tmp_path, capsys):
    """The plan sent, Bob's address bounced and the bounce read: (plan, state, server)."""
    receipts = tmp_path / "plan" / "receipts"
    with LoopbackMailServer(maildir=tmp_path / "mail", write_reports_to=receipts, report_delay=(0.0, 0.0),
                            mdn_fraction=0.0, seed=7) as server:
        plan = write_plan(tmp_path / "plan", server.port)
        state = tmp_path / "state"
        assert main(["send", str(plan), "--yes", "--state", str(state)]) == 0
        server.flush_reports()
        assert main(["receipts", str(plan), "--refresh", "--state", str(state)]) == 0
        capsys.readouterr()
        yield plan, state, server


def to(server, address: str) -> list:
    return [m for m in server.messages if address in m.rcpt_tos]


def test_the_same_communique_goes_to_the_corrected_address_once(bounced, capsys) -> None:
    plan, state, server = bounced
    before = len(server.messages)
    assert main(["send", str(plan), "--yes", "--state", str(state), "--resend-to", f"{BOB}={FIXED}"]) == 0
    out = capsys.readouterr().out
    assert f"news: {BOB} -> {FIXED} (bounced: 5.1.1" in out
    assert f"news to {FIXED} (correcting {BOB}): accepted" in out
    (message,) = to(server, FIXED)
    assert len(server.messages) == before + 1
    assert b"Subject: Orion 4.2.0 is out" in message.data and b"Reminder" not in message.data
    assert b"Hello Bob Unknown" in message.data and FIXED.encode() in message.data

    # Recorded as a correction of the original delivery: same communique, the member as person.
    with Ledger.open(state) as ledger:
        record = ledger.delivery(delivery_id("4.2.0", "news", FIXED))
        original = ledger.delivery(delivery_id("4.2.0", "news", BOB))
    assert record.communique_id == "news" and record.state == "accepted" and record.person_key == BOB
    assert original.state == "accepted" and original.message_id != record.message_id

    # Again, or by another spelling of the same address: nothing is sent twice.
    assert main(["send", str(plan), "--yes", "--state", str(state), "--resend-to", f"{BOB}=Bob@Example.com"]) == 0
    assert "already sent there" in capsys.readouterr().out
    assert len(to(server, FIXED)) == 1 and len(server.messages) == before + 1

    # The person is reached now (their bounce is cleared), and status says what the row corrects.
    server.flush_reports()
    assert main(["receipts", str(plan), "--refresh", "--json", "--state", str(state)]) == 0
    status = json.loads(capsys.readouterr().out)
    customers = next(c for c in status["groups"] if c["id"] == "customers")
    assert customers["bounced"] == 0 and customers["total"] == 3
    assert main(["status", str(plan), "--state", str(state)]) == 0
    text = capsys.readouterr().out
    assert f"corrects: {BOB}" in text


def test_a_plain_send_afterwards_does_not_send_the_corrected_address_again(bounced, capsys) -> None:
    plan, state, server = bounced
    assert main(["send", str(plan), "--yes", "--state", str(state), "--resend-to", f"{BOB}={FIXED}"]) == 0
    count = len(server.messages)
    assert main(["send", str(plan), "--yes", "--state", str(state)]) == 0
    assert len(server.messages) == count


@pytest.mark.parametrize(("pair", "only", "says"), [
    ("alice@example.com=alice2@example.com", [], "nothing bounced at alice@example.com"),
    ("alice@example.com=alice2@example.com", ["news"], "did not bounce"),
    (f"{BOB}=not an address", [], "'not an address' is not a usable email address"),
    (f"{BOB}=bob@corp.local", [], "corp.local is under .local"),
    (f"{BOB}={BOB.upper()}", [], "is the address that bounced"),
    (f"nobody@example.com={FIXED}", ["news"], "news was not sent to 'nobody@example.com'"),
    (f"{BOB}", [], "is not OLD=NEW"),
])
def test_what_cannot_be_corrected_is_refused_and_nothing_is_sent(bounced, capsys, pair, only, says) -> None:
    plan, state, server = bounced
    count = len(server.messages)
    argv = ["send", str(plan), "--yes", "--state", str(state), "--resend-to", pair]
    for ident in only:
        argv += ["--only", ident]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "hint:" in err
    assert len(server.messages) == count


def test_the_core_refuses_a_channel_without_addresses_and_a_missing_communique(bounced) -> None:
    plan_path, state, _ = bounced
    plan = load_plan(plan_path)
    with Ledger.open(state) as ledger:
        with pytest.raises(CorrectionError, match="no communique 'newz'"):
            prepare_corrections(plan, ledger, "newz", {BOB: FIXED})
        batch = prepare_corrections(plan, ledger, "news", {BOB: FIXED})
    assert [(c.old_address, c.new_address, c.person) for c in batch.to_send] == [(BOB, FIXED, BOB)]
    narrowed = batch.plan.group("customers")
    assert [m.email for m in narrowed.members] == [FIXED]
    assert [m.email for m in plan.group("customers").members] != [FIXED]  # the loaded plan is untouched


def test_a_corrected_address_at_an_allowed_special_domain_is_sent_to(bounced, capsys) -> None:
    plan, state, server = bounced
    text = plan.read_text(encoding="utf-8")
    plan.write_text(text.replace('receipts_to = "receipts@orion.example.com"',
                                 'receipts_to = "receipts@orion.example.com"\nallow_special_domains = ["corp.local"]'),
                    encoding="utf-8")
    assert main(["send", str(plan), "--yes", "--state", str(state), "--resend-to", f"{BOB}=bob@corp.local"]) == 0
    assert "news to bob@corp.local (correcting bob.unknown@example.com): accepted" in capsys.readouterr().out
    assert len(to(server, "bob@corp.local")) == 1
