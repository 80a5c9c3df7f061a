"""End to end with a real Postfix on loopback (issue 11): two plan folders (4.2.0, then a copy
bumped to 4.2.1) share one receipts Maildir that Postfix delivers into; real success DSNs
(NOTIFY=SUCCESS), a real unknown-user bounce, real delay warnings, a real `Action: relayed` from a
next hop without DSN, a user who exists for 4.2.0 and not for 4.2.1, and a wiped state folder.
Every recipient's fate is checked through `relcomm receipts`, `status` and `report`.

It skips when Postfix cannot run here, except with RELCOMM_REQUIRE_POSTFIX set (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from postfix_server import PostfixServer
from receipts_helpers import invoke
from relcomm_tui.commands import receipts as receipts_command
from relcomm_tui.commands import report as report_command
from relcomm_tui.commands import status as status_command
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.receipts.parse import parse_message

PEOPLE = {
    "alice": "Alice Good <alice@example.test>",
    "user15": "User Fifteen <user15@example.test>",
    "bob": "Bob Unknown <bob@example.test>",        # no such mailbox: a real bounce
    "carol": "Carol Slow <carol@slow.test>",         # the next hop never answers: a real delay DSN
    "dave": "Dave Relayed <dave@relay.test>",        # delayed, then relayed to a server without DSN
}
DEADLINE = 120.0  # seconds to wait for Postfix's reports (retries every second when hurried)


@pytest.fixture
def postfix():
    why_not = PostfixServer.available()
    if why_not is not None:
        # .ci/run installs postfix and sets RELCOMM_REQUIRE_POSTFIX, so CI can never skip this.
        if os.environ.get("RELCOMM_REQUIRE_POSTFIX"):
            pytest.fail(f"the Postfix end to end cannot run but RELCOMM_REQUIRE_POSTFIX is set: {why_not}")
        pytest.skip(f"Postfix end to end: {why_not}")
    server = PostfixServer(["receipts", "alice", "user15"]).start()
    try:
        yield server
    finally:
        server.stop()


def write_plan(folder: Path, postfix: PostfixServer, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    members = ",\n  ".join(f'"{p}"' for p in PEOPLE.values())
    (folder / "plan.toml").write_text(f"""format = 1
[release]
name = "Orion"
version = "{version}"

[sender]
from = "Release Engineering <release@relcomm.test>"
receipts_to = "receipts@example.test"

[transport.smtp]
host = "127.0.0.1"
port = {postfix.port}
security = "none"
concurrency = 2
timeout = 10

[receipts]
sources = [{{ maildir = "{postfix.maildir('receipts')}" }}]
dsn = true

[[stakeholders]]
id = "customers"
name = "Customers"
members = [
  {members}
]

[[communiques]]
id = "news"
to = ["customers"]
channel = "email"
subject = "Orion {{{{ release.version }}}} is out"
body = "Hello {{{{ recipient.name }}}}"
""", encoding="utf-8")
    return folder / "plan.toml"


async def send(path: Path) -> dict[str, str]:
    """Send the plan; returns each person's (local part's) envelope id."""
    plan = load_plan(path)
    with Ledger.open(plan.state_dir) as ledger:
        summary = await SendEngine(plan, ledger).run()
        assert summary.counts["accepted"] == len(PEOPLE), summary
        return {d.recipient_key.split("@")[0]: d.envelope_id for d in ledger.deliveries(plan.release.version)}


def reports_in(maildir: Path) -> set[tuple[str, str]]:
    """(envelope id, action) of every report Postfix delivered so far."""
    found = set()
    for sub in ("new", "cur"):
        for name in os.listdir(maildir / sub):
            report = parse_message((maildir / sub / name).read_bytes())
            for outcome in report.recipients:
                found.add((report.envelope_id or "", outcome.action))
    return found


def wait_for_reports(postfix: PostfixServer, wanted: set[tuple[str, str]]) -> None:
    """Until Postfix has delivered every wanted report, hurrying its retries; generous deadline."""
    deadline = time.monotonic() + DEADLINE
    while not wanted <= reports_in(postfix.maildir("receipts")):
        if time.monotonic() > deadline:
            missing = wanted - reports_in(postfix.maildir("receipts"))
            raise AssertionError(f"Postfix did not report {sorted(missing)}:\n{postfix.log()[-4000:]}")
        postfix.flush()
        time.sleep(0.5)


def first_reports(ids: dict[str, str], *, user15: str = "delivered", dave: str = "delayed") -> set:
    return {(ids["alice"], "delivered"), (ids["user15"], user15), (ids["bob"], "failed"),
            (ids["carol"], "delayed"), (ids["dave"], dave)}


def receipts_json(path: Path, capsys) -> dict:
    assert invoke(receipts_command, [str(path), "--refresh", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fates(data: dict) -> dict[str, dict]:
    return {r["recipient_key"].split("@")[0]: r["fate"] for r in data["recipients"]}


class RelayWithoutDsn:
    """The next hop for relay.test: an SMTP server that accepts everything and does not speak DSN."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        class Keep:
            messages: list = []

            async def handle_DATA(self, server, session, envelope):
                self.messages.append(envelope.content)
                return "250 2.0.0 queued"

        self.handler = Keep()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


async def test_two_plans_a_version_bump_and_a_wiped_state_folder_through_postfix(tmp_path, postfix, capsys):
    receipts = postfix.maildir("receipts")

    # 4.2.0 from its plan folder.
    first = write_plan(tmp_path / "orion-4.2.0", postfix, "4.2.0")
    ids_420 = await send(first)
    wait_for_reports(postfix, first_reports(ids_420))
    fate = fates(receipts_json(first, capsys))
    assert fate["alice"]["outcome"] == fate["user15"]["outcome"] == "delivered"
    assert fate["bob"]["outcome"] == "bounced" and "5.1.1" in fate["bob"]["reason"]
    assert fate["carol"]["outcome"] == fate["dave"]["outcome"] == "delayed"
    assert fate["carol"]["text"].startswith("delayed since ") and "4.4.1" in fate["carol"]["text"]

    # The folder is copied (with its .relcomm, as `cp -r` does), bumped to 4.2.1 and sent. user15's
    # mailbox is gone by then: 4.2.1's message to user15 bounces.
    second_folder = tmp_path / "orion-4.2.1"
    shutil.copytree(first.parent, second_folder)
    second = write_plan(second_folder, postfix, "4.2.1")
    postfix.write_mailboxes(["receipts", "alice"])
    postfix.reload()
    ids_421 = await send(second)
    assert not set(ids_421.values()) & set(ids_420.values())
    wait_for_reports(postfix, first_reports(ids_421, user15="failed"))

    # The next hop for relay.test comes up: both messages to dave are relayed, without DSN beyond.
    with RelayWithoutDsn(postfix.relay_port) as relay:
        wait_for_reports(postfix, {(ids_420["dave"], "relayed"), (ids_421["dave"], "relayed")})
        assert len(relay.handler.messages) == 2

    data = receipts_json(first, capsys)
    fate = fates(data)
    assert fate["user15"]["outcome"] == "delivered"  # 4.2.1's bounce is about 4.2.1
    assert fate["alice"]["outcome"] == "delivered" and fate["bob"]["outcome"] == "bounced"
    assert fate["carol"]["outcome"] == "delayed"
    assert (fate["dave"]["outcome"], fate["dave"]["standing"]) == ("relayed", "reached")  # the delay is cleared
    assert fate["dave"]["text"] == "relayed (the next server gives no reports)"
    assert data["other_send_reports"] == 6  # 4.2.1's five reports and its relay report
    assert data["unmatched_reports"] == 0
    assert all(r["receipts"] == (2 if r["recipient_key"].startswith("dave") else 1) for r in data["recipients"])

    data = receipts_json(second, capsys)
    fate = fates(data)
    assert (fate["user15"]["outcome"], fate["user15"]["standing"]) == ("bounced", "bounced")
    assert fate["alice"]["outcome"] == "delivered" and fate["bob"]["outcome"] == "bounced"
    assert fate["carol"]["outcome"] == "delayed" and fate["dave"]["outcome"] == "relayed"
    assert data["other_send_reports"] == 0  # the copied ledger knows 4.2.0's ids: they are 4.2.0's
    status = json.loads(_out(capsys, status_command, [str(second), "--json"]))
    user15 = next(d for d in status["deliveries"] if d["recipient_key"] == "user15@example.test")
    assert user15["state"] == "accepted" and user15["fate"]["outcome"] == "bounced"
    md = _out(capsys, report_command, [str(second)])
    assert "bounced: 5.1.1" in next(line for line in md.splitlines() if "user15@example.test" in line)
    assert "delayed since" in next(line for line in md.splitlines() if "carol@slow.test" in line)

    # 4.2.1's state folder is wiped and the plan sent again, user15's mailbox restored. The old
    # 4.2.1 reports in the shared mailbox are about the old send.
    shutil.rmtree(second_folder / ".relcomm")
    postfix.write_mailboxes(["receipts", "alice", "user15"])
    postfix.reload()
    with RelayWithoutDsn(postfix.relay_port):
        ids_again = await send(second)
        assert not set(ids_again.values()) & (set(ids_421.values()) | set(ids_420.values()))
        wait_for_reports(postfix, first_reports(ids_again, dave="relayed"))
    data = receipts_json(second, capsys)
    fate = fates(data)
    assert fate["user15"]["outcome"] == "delivered"  # the old send's bounce is not picked up
    assert fate["alice"]["outcome"] == "delivered" and fate["bob"]["outcome"] == "bounced"
    assert fate["carol"]["outcome"] == "delayed" and fate["dave"]["outcome"] == "relayed"
    assert all(r["receipts"] == 1 for r in data["recipients"])
    assert data["other_send_reports"] == 12  # 4.2.0's six and the old 4.2.1's six
    assert len(reports_in(receipts)) >= 17
    out = _out(capsys, receipts_command, [str(second)])
    assert "12 report(s) for another send (not counted here)" in out
    # 4.2.0's view did not move.
    fate = fates(receipts_json(first, capsys))
    assert [fate[p]["outcome"] for p in PEOPLE] == ["delivered", "delivered", "bounced", "delayed", "relayed"]


def _out(capsys, module, argv) -> str:
    assert invoke(module, argv) == 0
    return capsys.readouterr().out
