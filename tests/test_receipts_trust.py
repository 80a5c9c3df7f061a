"""Receipts that hold up (issues 10.7 and 11): real sends to loopback SMTP servers that write real
DSNs into real Maildirs, two plan folders sharing one receipts mailbox, a wiped state folder,
forged reports from strangers, copies of reports, delays and relays; every fate read back through
the same commands an engineer runs (`receipts`, `status`, `report`)."""

from __future__ import annotations

import datetime as dt
import json
import mailbox
import re
import shutil
from email.utils import format_datetime
from pathlib import Path

import pytest

from receipts_helpers import add_to_maildir, invoke
from relcomm_tui.commands import receipts as receipts_command
from relcomm_tui.commands import report as report_command
from relcomm_tui.commands import status as status_command
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger, delivery_id
from faulty_mailserver import FaultyMailServer
from relcomm_tui.demo.reports import BounceRule, build_dsn
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.receipts.followup import follow_up
from relcomm_tui.receipts.refresh import refresh
from relcomm_tui.receipts.status import BOUNCED, REACHED, UNKNOWN, build_status

BOUNCE_USER2 = (BounceRule("user2", "5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),)
MEMBERS = ["User One <user1@example.com>", "User Two <user2@example.com>", "User Three <user3@example.com>"]


def write_plan(folder: Path, port: int, receipts: Path, *, version: str = "4.2.0", members=MEMBERS,
               publish: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listed = ",\n  ".join(f'"{m}"' for m in members)
    text = f"""format = 1
[release]
name = "Orion"
version = "{version}"

[sender]
from = "Release Engineering <release@orion.example.com>"
receipts_to = "receipts@orion.example.com"

[transport.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
concurrency = 2
timeout = 5

[receipts]
sources = [{{ maildir = "{receipts}" }}]
dsn = true

[[stakeholders]]
id = "customers"
name = "Customers"
members = [
  {listed}
]

[[communiques]]
id = "news"
to = ["customers"]
channel = "email"
subject = "Orion {{{{ release.version }}}} is out"
body = "Hello {{{{ recipient.name }}}}"

[[communiques]]
id = "news-reminder"
reminder_for = "news"
to = ["customers"]
channel = "email"
subject = "Reminder: Orion {{{{ release.version }}}}"
body = "Hello again"
"""
    if publish:
        text += """
[[communiques]]
id = "release-page"
to = ["customers"]
channel = "publish"
subject = "Orion {{ release.version }}"
path = "www/{{ release.version }}.html"
body = "Orion {{ release.version }} is out."
"""
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    return folder / "plan.toml"


def server(tmp_path: Path, receipts: Path | None, name: str, bounce_rules=()) -> FaultyMailServer:
    """A loopback relay writing its DSNs into `receipts` (None: it writes none)."""
    return FaultyMailServer(maildir=tmp_path / f"mail-{name}", write_reports_to=receipts, report_delay=(0.0, 0.0),
                              mdn_fraction=0.0, seed=3, bounce_rules=bounce_rules)


async def send(path: Path, smtp: FaultyMailServer, *, flush: bool = True):
    plan = load_plan(path)
    with Ledger.open(plan.state_dir) as ledger:
        summary = await SendEngine(plan, ledger).run()
    if flush:
        smtp.flush_reports()
    return summary


def fates(path: Path) -> dict[tuple[str, str], dict]:
    """`relcomm receipts PLAN --refresh --json`, per (communique, recipient): the fate."""
    plan = load_plan(path)
    with Ledger.open(plan.state_dir) as ledger:
        refresh(plan, ledger)
        status = build_status(plan, ledger)
    # "standing" first: it is what a view showed before fates had names.
    return {(r.communique_id, r.recipient_key): {"standing": r.standing, **r.as_dict().get("fate", {})}
            for r in status.rows}


def cli(module, argv, capsys) -> str:
    assert invoke(module, argv) == 0
    return capsys.readouterr().out


# -- 10.7: identifiers nobody can compute ----------------------------------------------------------


async def test_every_send_carries_its_own_random_ids_and_a_resend_reuses_them(tmp_path):
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "a") as smtp:
        first = write_plan(tmp_path / "a", smtp.port, receipts)
        second = write_plan(tmp_path / "b", smtp.port, receipts)  # the same plan, another folder
        await send(first, smtp)
        await send(second, smtp)
        envids = [m.mail_options["ENVID"] for m in smtp.messages]
        message_ids = [re.search(rb"(?im)^Message-ID:\s*(\S+)", m.data).group(1).decode() for m in smtp.messages]
    assert len(smtp.messages) == 6
    assert len(set(envids)) == len(set(message_ids)) == 6  # same version, communique, address: still all different
    computed = {delivery_id("4.2.0", "news", m.split("<")[1].rstrip(">")) for m in MEMBERS}
    sent_text = b"".join(m.data for m in smtp.messages).decode()
    assert not computed & set(envids) and not any(c in sent_text for c in computed)
    with Ledger.open(load_plan(first).state_dir) as ledger:
        records = {d.recipient_key: d for d in ledger.deliveries("4.2.0")}
    assert {r.envelope_id for r in records.values()} <= set(envids)

    # A resend (retry of a refused delivery) carries the ids stored for it.
    refusing = FaultyMailServer(maildir=tmp_path / "mail-r", bounce_mode="smtp", bounce_rules=BOUNCE_USER2)
    with refusing:
        plan_path = write_plan(tmp_path / "c", refusing.port, receipts)
        await send(plan_path, refusing, flush=False)
        plan = load_plan(plan_path)
        with Ledger.open(plan.state_dir) as ledger:
            before = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == "user2@example.com")
            assert before.state == "rejected"
            refusing.bounce_rules = ()
            await SendEngine(plan, ledger, retry_failed=True).run()
            after = ledger.delivery(before.id)
        resent = [m for m in refusing.messages if m.rcpt_tos == ["user2@example.com"]]
    assert after.state == "accepted" and len(resent) == 1
    assert resent[0].mail_options["ENVID"] == before.envelope_id == after.envelope_id
    assert f"Message-ID: {before.message_id}".encode() in resent[0].data


async def test_a_strangers_reports_never_set_a_fate(tmp_path, capsys):
    """Issue 10.7: an MDN naming only `Final-Recipient: user1@...` and a DSN whose envelope id is
    computed from the plan alone (the old ids) are shown unverified; nobody's fate changes."""
    receipts = tmp_path / "receipts"
    with server(tmp_path, None, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp, flush=False)  # no report came back
    now = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
    forged_mdn = (f"From: stranger@evil.example\nTo: receipts@orion.example.com\nSubject: Read\nDate: {now}\n"
                  f"Message-ID: <forged-1@evil.example>\nMIME-Version: 1.0\n"
                  f"Content-Type: multipart/report; report-type=disposition-notification; boundary=B\n\n"
                  f"--B\nContent-Type: message/disposition-notification\n\nFinal-Recipient: rfc822; user1@example.com\n"
                  f"Disposition: manual-action/MDN-sent-manually; displayed\n\n--B--\n").encode()
    computed = delivery_id("4.2.0", "news", "user3@example.com")
    forged_dsn = (f"From: MAILER-DAEMON@evil.example\nTo: receipts@orion.example.com\nSubject: failure\nDate: {now}\n"
                  f"Message-ID: <forged-2@evil.example>\nMIME-Version: 1.0\n"
                  f"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
                  f"--B\nContent-Type: message/delivery-status\n\nOriginal-Envelope-Id: {computed}\n\n"
                  f"Final-Recipient: rfc822; user3@example.com\nAction: failed\nStatus: 5.1.1\n\n--B--\n").encode()
    add_to_maildir(receipts, forged_mdn)
    add_to_maildir(receipts, forged_dsn)

    out = cli(receipts_command, [str(path), "--refresh"], capsys)
    result = fates(path)
    assert result["news", "user1@example.com"]["standing"] == UNKNOWN  # never confirmed by a stranger
    assert result["news", "user1@example.com"]["outcome"] == "unverified"
    assert result["news", "user1@example.com"]["text"] == "unverified: matched by address only: says read"
    assert result["news", "user3@example.com"]["standing"] == UNKNOWN  # never bounced by a computed id
    user1 = next(line for line in out.splitlines() if "user1@example.com" in line)
    assert "unverified: matched by address only: says read" in user1
    assert "1 unverified (matched by address only)" in out and "1 for another send" in out
    md = cli(report_command, [str(path)], capsys)
    assert "unverified: matched by address only: says read" in md
    assert "bounced" not in next(line for line in md.splitlines() if "user3@example.com" in line)


# -- 11.1: each report credited to the send it is about ----------------------------------------------


@pytest.mark.parametrize("copy_state", [True, False], ids=["copied-with-its-ledger", "fresh-state"])
async def test_two_plan_folders_sharing_one_receipts_mailbox(tmp_path, capsys, copy_state):
    """4.2.0 is sent from one folder; the folder is copied, bumped to 4.2.1 and sent; user2 bounces
    in 4.2.1 only. Each plan keeps its own fates; the other's reports are "for another send"."""
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "ok") as smtp:
        first = write_plan(tmp_path / "orion-4.2.0", smtp.port, receipts)
        await send(first, smtp)
    assert fates(first)["news", "user2@example.com"]["standing"] == REACHED
    second_folder = tmp_path / "orion-4.2.1"
    shutil.copytree(first.parent, second_folder, ignore=None if copy_state else shutil.ignore_patterns(".relcomm"))
    with server(tmp_path, receipts, "bouncing", BOUNCE_USER2) as smtp:
        second = write_plan(second_folder, smtp.port, receipts, version="4.2.1")
        await send(second, smtp)

    old, new = fates(first), fates(second)
    assert old["news", "user2@example.com"]["standing"] == REACHED  # 4.2.1's bounce is not 4.2.0's
    assert old["news", "user2@example.com"]["outcome"] == "delivered"
    assert new["news", "user2@example.com"]["outcome"] == "bounced"
    assert new["news", "user1@example.com"]["outcome"] == "delivered"
    out = cli(receipts_command, [str(first), "--refresh"], capsys)
    assert "3 report(s) for another send (not counted here)" in out
    # 4.2.0's success DSNs say nothing about 4.2.1's sends (they are older, and carry other ids)
    with Ledger.open(load_plan(second).state_dir) as ledger:
        for record in ledger.deliveries("4.2.1"):
            for receipt in ledger.receipts(record.id):
                assert receipt["at"] >= record.sent_at[:19]
    data = json.loads(cli(receipts_command, [str(second), "--json"], capsys))
    assert data["other_send_reports"] == (0 if copy_state else 3)  # a copied ledger knows 4.2.0's ids


async def test_a_wiped_state_folder_does_not_pick_up_the_old_sends_reports(tmp_path, capsys):
    receipts = tmp_path / "plan" / "receipts"
    with server(tmp_path, receipts, "bouncing", BOUNCE_USER2) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp)
    assert fates(path)["news", "user2@example.com"]["standing"] == BOUNCED
    shutil.rmtree(path.parent / ".relcomm")
    with server(tmp_path, receipts, "ok") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        smtp.reports.delay = (3600.0, 3600.0)  # hold this send's reports until flushed
        await send(path, smtp, flush=False)
        before = fates(path)  # only the old send's reports are in the mailbox
        assert {f["standing"] for f in before.values()} == {UNKNOWN}, before
        assert {f["outcome"] for f in before.values()} == {"accepted"}, before
        smtp.flush_reports()
    after = fates(path)
    assert after["news", "user2@example.com"]["outcome"] == "delivered"
    data = json.loads(cli(receipts_command, [str(path), "--json"], capsys))
    assert data["other_send_reports"] == 3
    assert all(r["receipts"] == 1 for r in data["recipients"])


async def test_a_report_dated_before_the_send_is_never_credited(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, None, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp, flush=False)
        original = smtp.messages[0]
    with Ledger.open(load_plan(path).state_dir) as ledger:
        record = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == original.rcpt_tos[0])
    yesterday = format_datetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    raw = build_dsn(original=original.data, mail_from=original.mail_from, recipient=record.recipient_key,
                    action="failed", status="5.1.1", envid=record.envelope_id, diagnostic="550 5.1.1 gone")
    add_to_maildir(receipts, re.sub(rb"(?m)^Date: .*$", f"Date: {yesterday}".encode(), raw, count=1))
    fate = fates(path)["news", record.recipient_key]
    assert fate["standing"] == UNKNOWN and fate["outcome"] == "accepted"
    out = cli(receipts_command, [str(path)], capsys)
    assert "1 report(s) matched no delivery" in out


async def test_a_report_by_address_never_overrides_one_by_id(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp)  # success DSNs, with the ids
    later = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
    stripped_bounce = (f"From: MAILER-DAEMON@mx.example.com\nTo: receipts@orion.example.com\nSubject: failure\n"
                       f"Date: {later}\nMessage-ID: <b-1@mx.example.com>\nMIME-Version: 1.0\n"
                       f"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
                       f"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
                       f"Final-Recipient: rfc822; user2@example.com\nAction: failed\nStatus: 5.2.2\n"
                       f"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n\n--B--\n").encode()
    add_to_maildir(receipts, stripped_bounce)
    fate = fates(path)["news", "user2@example.com"]
    assert fate["standing"] == REACHED
    assert fate["outcome"] == "delivered"
    assert fate["unverified"] == "matched by address only: says bounced (5.2.2 552 5.2.2 Mailbox full)"
    line = next(x for x in cli(receipts_command, [str(path)], capsys).splitlines() if "user2@example.com" in x)
    assert "delivered" in line and "unverified report: matched by address only: says bounced" in line


async def test_a_report_dated_in_the_future_cannot_outrank_later_reports(tmp_path):
    receipts = tmp_path / "receipts"
    with server(tmp_path, None, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp, flush=False)
        original = next(m for m in smtp.messages if m.rcpt_tos == ["user1@example.com"])
    with Ledger.open(load_plan(path).state_dir) as ledger:
        record = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == "user1@example.com")
    failed = build_dsn(original=original.data, mail_from=original.mail_from, recipient=record.recipient_key,
                       action="failed", status="5.2.2", envid=record.envelope_id, diagnostic="552 5.2.2 full")
    add_to_maildir(receipts, re.sub(rb"(?m)^Date: .*$", b"Date: Fri, 01 Jan 2100 00:00:00 +0000", failed, count=1))
    assert fates(path)["news", "user1@example.com"]["outcome"] == "bounced"
    delivered = build_dsn(original=original.data, mail_from=original.mail_from, recipient=record.recipient_key,
                          action="delivered", status="2.0.0", envid=record.envelope_id)
    later = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90))
    add_to_maildir(receipts, re.sub(rb"(?m)^Date: .*$", f"Date: {later}".encode(), delivered, count=1))
    assert fates(path)["news", "user1@example.com"]["outcome"] == "delivered"


# -- 11.2: a report counts once, wherever it was read from ------------------------------------------


async def test_copies_of_reports_in_maildir_and_mbox_count_once(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "bouncing", BOUNCE_USER2) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp)
    assert fates(path)["news", "user2@example.com"]["standing"] == BOUNCED
    box = mailbox.Maildir(receipts, create=False)
    originals = [box.get_bytes(key) for key in box.keys()]
    # An MUA moves one to cur/ with flags, someone copies each report again under a new name, and an
    # mbox export of the same mailbox is added as a second source.
    for key in list(box.keys())[:1]:
        message = box.get_message(key)
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message
    for raw in originals:
        add_to_maildir(receipts, raw)
    mbox_path = tmp_path / "export.mbox"
    export = mailbox.mbox(mbox_path)
    for raw in originals:
        export.add(raw)
    export.flush()
    text = path.read_text().replace(f'sources = [{{ maildir = "{receipts}" }}]',
                                    f'sources = [{{ maildir = "{receipts}" }}, {{ mbox = "{mbox_path}" }}]')
    path.write_text(text)
    data = json.loads(cli(receipts_command, [str(path), "--refresh", "--json"], capsys))
    assert {(r["recipient_key"], r["receipts"]) for r in data["recipients"] if r["communique_id"] == "news"} == {
        ("user1@example.com", 1), ("user2@example.com", 1), ("user3@example.com", 1)}
    assert data["refresh"]["read"] == 6 and data["refresh"]["duplicates"] == 6 and data["refresh"]["new_receipts"] == 0
    shutil.copy(mbox_path, tmp_path / "export-copy.mbox")  # the mbox copied elsewhere, read too
    path.write_text(path.read_text().replace(f'{{ mbox = "{mbox_path}" }}',
                                             f'{{ mbox = "{tmp_path / "export-copy.mbox"}" }}'))
    data = json.loads(cli(receipts_command, [str(path), "--refresh", "--json"], capsys))
    assert data["refresh"]["duplicates"] == 3 and data["refresh"]["new_receipts"] == 0


# -- 11.4 / 11.5: delays and relays, shown and cleared ---------------------------------------------------


async def test_a_delay_shows_until_a_later_report_settles_it_and_relayed_is_its_own_outcome(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, None, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp, flush=False)
        messages = {m.rcpt_tos[0]: m for m in smtp.messages}
    with Ledger.open(load_plan(path).state_dir) as ledger:
        records = {d.recipient_key: d for d in ledger.deliveries("4.2.0")}

    def dsn(address: str, action: str, status: str, diagnostic: str) -> bytes:
        m = messages[address]
        return build_dsn(original=m.data, mail_from=m.mail_from, recipient=address, action=action, status=status,
                         envid=records[address].envelope_id, diagnostic=diagnostic)

    add_to_maildir(receipts, dsn("user1@example.com", "delayed", "4.4.1", "421 4.4.1 mx.example.com: connection timed out"))
    add_to_maildir(receipts, dsn("user2@example.com", "delayed", "4.7.1", "450 4.7.1 greylisted, try again later"))
    add_to_maildir(receipts, dsn("user3@example.com", "relayed", "2.0.0", "250 2.0.0 queued as 1234"))
    out = cli(receipts_command, [str(path), "--refresh"], capsys)
    lines = {a: next(x for x in out.splitlines() if a in x) for a in messages}
    assert re.search(r"delayed since (\d\d-\d\d )?\d\d:\d\d: 4\.4\.1 421 4\.4\.1 mx\.example\.com: connection timed out",
                     lines["user1@example.com"])
    assert "delayed since" in lines["user2@example.com"] and "4.7.1" in lines["user2@example.com"]
    assert lines["user3@example.com"].rstrip().endswith("relayed (the next server gives no reports)")
    md = cli(report_command, [str(path)], capsys)
    assert "delayed since" in next(x for x in md.splitlines() if "user1@example.com" in x)
    data = json.loads(cli(receipts_command, [str(path), "--json"], capsys))
    user3 = next(r for r in data["recipients"] if r["recipient_key"] == "user3@example.com" and r["communique_id"] == "news")
    assert user3["standing"] == REACHED and user3["relayed"] and not user3["delivered"]  # reached, not confirmed
    assert next(c for c in data["groups"] if c["id"] == "customers")["confirmed"] == 0

    # Later: user1's message is delivered, user2's finally fails. The delays are cleared.
    add_to_maildir(receipts, dsn("user1@example.com", "delivered", "2.0.0", "250 ok"))
    add_to_maildir(receipts, dsn("user2@example.com", "failed", "5.7.1", "550 5.7.1 still greylisted, giving up"))
    result = fates(path)
    assert result["news", "user1@example.com"]["outcome"] == "delivered"
    assert (result["news", "user2@example.com"]["outcome"], result["news", "user2@example.com"]["standing"]) == (
        "bounced", BOUNCED)
    assert "delayed" not in cli(receipts_command, [str(path)], capsys)


# -- 11.8: one fate, every view ------------------------------------------------------------------------


async def test_status_receipts_and_report_show_the_same_fate(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "bouncing", BOUNCE_USER2) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp)
    cli(receipts_command, [str(path), "--refresh"], capsys)
    status = json.loads(cli(status_command, [str(path), "--json"], capsys))
    user2 = next(d for d in status["deliveries"] if d["recipient_key"] == "user2@example.com")
    assert user2["state"] == "accepted"  # the relay took it...
    assert (user2["fate"]["outcome"], user2["fate"]["standing"]) == ("bounced", BOUNCED)  # ...and it bounced
    assert "fate: bounced: 5.1.1" in cli(status_command, [str(path)], capsys)
    receipts_json = json.loads(cli(receipts_command, [str(path), "--json"], capsys))
    by_id = {r["delivery_id"]: r["fate"] for r in receipts_json["recipients"]}
    assert {d["id"]: d["fate"] for d in status["deliveries"]} == by_id
    csv_out = tmp_path / "record.csv"
    assert invoke(report_command, [str(path), "-o", str(csv_out)]) == 0
    import csv

    rows = {r["delivery_id"]: r for r in csv.DictReader(csv_out.open(encoding="utf-8"))}
    assert {ident: (r["fate"], r["standing"]) for ident, r in rows.items()} == {
        ident: (f["outcome"], f["standing"]) for ident, f in by_id.items()}


# -- 11.9: coverage counts people --------------------------------------------------------------------------


async def test_coverage_counts_people_and_a_corrected_address_clears_the_bounce(tmp_path, capsys):
    receipts = tmp_path / "receipts"
    with server(tmp_path, receipts, "bouncing", BOUNCE_USER2) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts, publish=True)
        await send(path, smtp)
        plan = load_plan(path)
        with Ledger.open(plan.state_dir) as ledger:
            refresh(plan, ledger)
            customers = next(c for c in build_status(plan, ledger).by_group if c.id == "customers")
            assert (customers.total, customers.reached, customers.bounced) == (3, 2, 1)  # not 4: the page is no person
            # A reminder to everyone, user2 at a corrected address (which the server accepts).
            await follow_up(plan, ledger, "news", ["user1@example.com", "user2@example.com", "user3@example.com"],
                            corrections={"user2@example.com": "user.two@example.com"})
            smtp.flush_reports()
            refresh(plan, ledger)
            status = build_status(plan, ledger)
    customers = next(c for c in status.by_group if c.id == "customers")
    assert (customers.total, customers.reached, customers.bounced, customers.unknown) == (3, 3, 0, 0)
    corrected = next(r for r in status.rows if r.recipient_key == "user.two@example.com")
    assert corrected.person == "user2@example.com" and corrected.standing == REACHED
    news = next(c for c in status.by_communique if c.id == "news")
    assert (news.total, news.bounced) == (3, 1)  # the communique still counts its deliveries
    out = cli(receipts_command, [str(path)], capsys)
    assert "customers: 3 · reached 3 (100%)" in out
    assert "| `customers` | 3 | 3 (100%) |" in cli(report_command, [str(path)], capsys)


def test_a_person_in_two_groups_counts_once_in_each(tmp_path):
    from relcomm_tui.store.ledger import DeliveryIntent

    path = write_plan(tmp_path / "plan", 2525, tmp_path / "receipts")
    text = path.read_text().replace('[[communiques]]\nid = "news"\n', '''[[stakeholders]]
id = "exec"
name = "Executives"
members = ["User One <user1@example.com>"]

[[communiques]]
id = "news"
''', 1).replace('to = ["customers"]\nchannel = "email"\nsubject = "Orion {{ release.version }} is out"',
                'to = ["customers", "exec"]\nchannel = "email"\nsubject = "Orion {{ release.version }} is out"')
    path.write_text(text)
    plan = load_plan(path)
    with Ledger.open(plan.state_dir) as ledger:
        ledger.ensure_deliveries("4.2.0", [DeliveryIntent("news", r.key, r.display, g.id, "email")
                                           for g, r in plan.audience(plan.communique("news"))], domain="x.example")
        for record in ledger.deliveries("4.2.0"):
            ledger.mark_sending([record.id])
            ledger.mark_outcome(record.id, "accepted", "250 ok")
        groups = {c.id: c for c in build_status(plan, ledger).by_group}
    assert (groups["customers"].total, groups["exec"].total) == (3, 1)  # user1's delivery is in "customers"


# -- 11.10: `parse` is a subcommand --------------------------------------------------------------------------


def test_receipts_parse_takes_options_before_or_after_the_files(tmp_path, capsys):
    import subprocess
    import sys

    from relcomm_tui.commands.main import main

    report = tmp_path / "r.eml"
    report.write_bytes(b"From: MAILER-DAEMON@x.example\nTo: r@example.com\nSubject: failure\nMIME-Version: 1.0\n"
                       b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
                       b"Content-Type: message/delivery-status\n\nOriginal-Envelope-Id: relcomm.abc\n\n"
                       b"Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\n\n--B--\n")
    outputs = []
    for argv in (["receipts", "parse", "--json", str(report)], ["receipts", "parse", str(report), "--json"],
                 ["receipts", "--json", "parse", str(report)]):
        assert main(argv) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0]["recipients"][0]["action"] == "failed" and outputs[0][0]["envelope_id"] == "relcomm.abc"
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "receipts", "parse", "--json", str(report), str(report)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 2, done.stderr
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "receipts", "parse", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "FILE" in done.stderr and "Traceback" not in done.stderr


def forged_reports(records, now: dt.datetime) -> list[tuple[str, bytes]]:
    """What a stranger (or another send) can put in the receipts mailbox about each recipient."""
    import secrets

    date = format_datetime(now + dt.timedelta(seconds=30))
    yesterday = format_datetime(now - dt.timedelta(days=1))
    out = []
    for n, record in enumerate(records):
        address = record.recipient_key

        def dsn(extra: str, *, action: str = "failed", when: str = date, returned: str = "") -> bytes:
            returned_part = f"--B\nContent-Type: text/rfc822-headers\n\n{returned}\n" if returned else ""
            return (f"From: MAILER-DAEMON@evil.example\nTo: receipts@orion.example.com\nSubject: report\n"
                    f"Date: {when}\nMessage-ID: <f{n}.{secrets.token_hex(4)}@evil.example>\nMIME-Version: 1.0\n"
                    f"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
                    f"--B\nContent-Type: message/delivery-status\n\n{extra}\n"
                    f"Final-Recipient: rfc822; {address}\nAction: {action}\nStatus: 5.1.1\n\n"
                    f"{returned_part}--B--\n").encode()

        def mdn(extra: str = "") -> bytes:
            return (f"From: {address}\nTo: receipts@orion.example.com\nSubject: Read\nDate: {date}\n"
                    f"Message-ID: <m{n}.{secrets.token_hex(4)}@evil.example>\n{extra}MIME-Version: 1.0\n"
                    f"Content-Type: multipart/report; report-type=disposition-notification; boundary=B\n\n"
                    f"--B\nContent-Type: message/disposition-notification\n\nFinal-Recipient: rfc822; {address}\n"
                    f"Disposition: manual-action/MDN-sent-manually; displayed\n\n--B--\n").encode()

        computed = delivery_id(record.release_version, record.communique_id, address)
        out += [
            ("address-only failure", dsn("Reporting-MTA: dns; evil.example\n")),
            ("address-only read receipt", mdn()),
            ("envelope id computed from the plan", dsn(f"Original-Envelope-Id: {computed}\n")),
            ("another send's envelope id", dsn(f"Original-Envelope-Id: relcomm.{secrets.token_hex(16)}\n")),
            ("another send's Message-ID", mdn(f"In-Reply-To: <relcomm.{secrets.token_hex(16)}@orion.example.com>\n")),
            ("another release in the returned headers", dsn("", returned="X-Relcomm-Release: 9.9.9\n")),
            ("the real envelope id, dated before the send",
             dsn(f"Original-Envelope-Id: {record.envelope_id}\n", when=yesterday)),
            ("address-only delivery", dsn("", action="delivered")),
        ]
    return out


@pytest.mark.campaign
async def test_campaign_forged_reports_never_set_a_fate(tmp_path):
    """Every forged report, for every recipient: nobody's standing moves (issues 10.7, 11.1)."""
    import campaign

    receipts = tmp_path / "receipts"
    with server(tmp_path, None, "a") as smtp:
        path = write_plan(tmp_path / "plan", smtp.port, receipts)
        await send(path, smtp, flush=False)
    plan = load_plan(path)
    with Ledger.open(plan.state_dir) as ledger:
        records = [d for d in ledger.deliveries("4.2.0") if d.communique_id == "news"]
        forged = forged_reports(records, dt.datetime.now(dt.timezone.utc))
        for _, raw in forged:
            add_to_maildir(receipts, raw)
        result = refresh(plan, ledger)
        rows = build_status(plan, ledger).rows
    moved = [r for r in rows if r.standing != UNKNOWN or r.delivered or r.bounced or r.displayed]
    held = len(forged) * (len(records) - len(moved)) // len(records)  # per recipient: all its forgeries held
    campaign.record("input", "inbound: forged or misdirected reports (no ids, computed ids, another send's, "
                    "dated before)", tried=len(forged), held=held)
    assert result.read == len(forged) and result.matched == 0
    assert moved == [], [(r.recipient_key, r.fate) for r in moved]
    assert all(r.fate.outcome == "unverified" for r in rows)  # and each one says so
