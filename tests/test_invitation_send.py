"""Calendar invitations sent for real: a loopback aiosmtpd server, the real engine and ledger, and the
received bytes read back with the icalendar parser (what a calendar client would see).

The first send invites (SEQUENCE 0), a changed time sends an update (same UID, SEQUENCE 1) to those
already invited and nobody else, a run with nothing changed sends nothing, a late-added person gets
the current sequence as their first invitation, and a cancel reaches everyone invited once."""

from __future__ import annotations

import email
import email.policy

import icalendar
import pytest

from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.invitations import store
from relcomm_tui.invitations.send import cancel_plan
from relcomm_tui.store.ledger import Ledger
from faulty_mailserver import FaultyMailServer
from relcomm_tui.plan import load_plan

PEOPLE = ['"Dana Chief" <dana@vega.example.com>', '"Ada Lovelace" <ada@vega.example.com>']


def write(folder, port, *, start="2031-03-04T16:00:00", people=PEOPLE, location="Auditorium B"):
    folder.mkdir(parents=True, exist_ok=True)
    members = ", ".join(f"'{p}'" for p in people)
    (folder / "plan.toml").write_text(f'''format = 1
[release]
name = "Vega"
version = "2.0.0"
[sender]
from = "Vega Releases <releases@vega.example.com>"
[transport.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
[[stakeholders]]
id = "exec"
members = [{members}]
[[communiques]]
id = "presentation"
to = ["exec"]
subject = "Vega {{{{ release.version }}}}: the release presented"
body = "Hello {{{{ recipient.name }}}}, join us {{{{ invitation.start }}}}."
[communiques.invitation]
start = {start}
time_zone = "Europe/Berlin"
duration = "45m"
location = "{location}"
url = "https://meet.example.com/vega"
''', encoding="utf-8")
    return folder / "plan.toml"


def calendar_of(raw: bytes) -> tuple[email.message.EmailMessage, icalendar.Calendar, str]:
    """The message, the calendar of its text/calendar part, and that part's method parameter."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    attachments = [p for p in message.walk() if p.get_content_type() == "application/ics"]
    assert len(parts) == 1 and len(attachments) == 1
    assert attachments[0].get_filename() == "invite.ics"
    same = [p.get_payload(decode=True).replace(b"\r\n", b"\n") for p in (attachments[0], parts[0])]
    assert same[0] == same[1]
    return message, icalendar.Calendar.from_ical(parts[0].get_payload(decode=True)), parts[0].get_param("method")


def event(cal: icalendar.Calendar) -> icalendar.Event:
    (found,) = [c for c in cal.walk("VEVENT")]
    return found


async def send(plan_file, ledger, **options):
    plan = load_plan(plan_file)
    return await SendEngine(plan, ledger, **options).run()


@pytest.fixture
def server(tmp_path):
    with FaultyMailServer(maildir=tmp_path / "server-mail") as running:
        yield running


async def test_invite_update_and_cancel_reach_each_person_once_per_sequence(tmp_path, server):
    plan_file = write(tmp_path / "plan", server.port)
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")

    summary = await send(plan_file, ledger)
    assert summary.exit_code == 0 and len(server.messages) == 2
    uids = set()
    for accepted in server.messages:
        message, cal, method = calendar_of(accepted.data)
        vevent = event(cal)
        assert method == "REQUEST" and str(cal["METHOD"]) == "REQUEST"
        # the parameter as Outlook and Google write it (unquoted), which some clients match literally
        assert b'Content-Type: text/calendar; charset="UTF-8"; method=REQUEST\r\n' in accepted.data
        assert int(vevent["SEQUENCE"]) == 0
        assert str(vevent["ORGANIZER"]) == "mailto:releases@vega.example.com"
        attendee = vevent["ATTENDEE"]
        assert str(attendee) == f"mailto:{accepted.rcpt_tos[0]}"  # each message invites its own recipient only
        assert attendee.params["RSVP"] == "TRUE" and attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert vevent.decoded("DTSTART").isoformat() == "2031-03-04T16:00:00+01:00"
        assert str(vevent["DTSTART"].params["TZID"]) == "Europe/Berlin"
        assert (vevent.decoded("DTEND") - vevent.decoded("DTSTART")).total_seconds() == 45 * 60
        assert str(vevent["LOCATION"]) == "Auditorium B" and str(vevent["URL"]) == "https://meet.example.com/vega"
        assert [c.name for c in cal.subcomponents][0] == "VTIMEZONE"
        uids.add(str(vevent["UID"]))
    (uid,) = uids  # one event for everyone
    assert uid.startswith("relcomm.") and [v.sequence for v in store.versions(ledger, "2.0.0", "presentation")] == [0]

    # Nothing changed: nothing is sent.
    assert (await send(plan_file, ledger)).exit_code == 0
    assert len(server.messages) == 2

    # The time moves, and a third person joins the plan.
    write(tmp_path / "plan", server.port, start="2031-03-05T10:30:00",
          people=PEOPLE + ['"Noor Haddad" <noor@vega.example.com>'])
    assert (await send(plan_file, ledger)).exit_code == 0
    new = server.messages[2:]
    assert sorted(m.rcpt_tos[0] for m in new) == ["ada@vega.example.com", "dana@vega.example.com",
                                                    "noor@vega.example.com"]
    for accepted in new:
        message, cal, method = calendar_of(accepted.data)
        vevent = event(cal)
        assert str(vevent["UID"]) == uid and int(vevent["SEQUENCE"]) == 1 and method == "REQUEST"
        assert vevent.decoded("DTSTART").isoformat() == "2031-03-05T10:30:00+01:00"
        if accepted.rcpt_tos[0] == "noor@vega.example.com":
            assert not str(message["Subject"]).startswith("Updated:")  # her first invitation
            assert message["X-Relcomm-Communique"] == "presentation"
        else:
            assert str(message["Subject"]) == "Updated: Vega 2.0.0: the release presented"
            assert message["X-Relcomm-Communique"] == "presentation#1"
            text = message.get_body(("plain",)).get_content()
            assert "now Wed 5 Mar 2031 10:30-11:15" in text and "was Tue 4 Mar 2031 16:00-16:45" in text
    updates = ledger.deliveries("2.0.0", "presentation#1")
    assert sorted(d.recipient_key for d in updates) == ["ada@vega.example.com", "dana@vega.example.com"]
    assert all(d.state == "accepted" for d in updates)

    # Again: the update is never sent twice.
    assert (await send(plan_file, ledger)).exit_code == 0
    assert len(server.messages) == 5

    # Cancel: everyone invited, once, SEQUENCE 2, from the ledger's record of the event.
    plan, ident, people = cancel_plan(load_plan(plan_file), ledger, "presentation")
    assert ident == "presentation#2" and people == 3
    await SendEngine(plan, ledger, only=[ident]).run()
    cancels = server.messages[5:]
    assert len(cancels) == 3
    for accepted in cancels:
        message, cal, method = calendar_of(accepted.data)
        vevent = event(cal)
        assert method == "CANCEL" and str(cal["METHOD"]) == "CANCEL"
        assert str(vevent["UID"]) == uid and int(vevent["SEQUENCE"]) == 2 and str(vevent["STATUS"]) == "CANCELLED"
        assert str(message["Subject"]).startswith("Cancelled: Vega 2.0.0")
    plan, ident, _ = cancel_plan(load_plan(plan_file), ledger, "presentation")
    await SendEngine(plan, ledger, only=[ident]).run()
    assert len(server.messages) == 8  # asked twice, sent once

    # A send after the cancel does not invite anyone again.
    summary = await send(plan_file, ledger)
    assert len(server.messages) == 8
    assert [s.communique_id for s in summary.skipped] == ["presentation"]
    assert "cancelled" in summary.skipped[0].reason


async def test_a_change_before_anything_went_out_stays_sequence_zero(tmp_path, server):
    plan_file = write(tmp_path / "plan", server.port)
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
    server.connection_faults = []
    from relcomm_tui.invitations.send import for_send

    plan = load_plan(plan_file)
    for_send(plan, ledger, list(plan.communiques))  # recorded, nothing sent (a run that stopped at once)
    write(tmp_path / "plan", server.port, start="2031-03-06T09:00:00")
    await send(plan_file, ledger)
    (version,) = store.versions(ledger, "2.0.0", "presentation")
    assert version.sequence == 0 and version.event.when.start.isoformat() == "2031-03-06T09:00:00+01:00"
    for accepted in server.messages:
        _, cal, _ = calendar_of(accepted.data)
        assert int(event(cal)["SEQUENCE"]) == 0


def test_cancel_invitation_command_after_the_communique_left_the_plan(tmp_path, server, capsys):
    """Headless: `relcomm send` invites, the communique is deleted from the plan, `relcomm
    cancel-invitation` still cancels it for everyone (from the ledger), and a second run sends nothing."""
    from relcomm_tui.commands.main import main

    plan_file = write(tmp_path / "plan", server.port)
    assert main(["send", str(plan_file), "--yes"]) == 0
    assert len(server.messages) == 2
    text = plan_file.read_text(encoding="utf-8")
    plan_file.write_text(text.replace('id = "presentation"', 'id = "news"').split("[communiques.invitation]")[0],
                         encoding="utf-8")
    assert main(["cancel-invitation", str(plan_file), "presentation"]) == 2  # no terminal, no --yes
    assert "needs --yes" in capsys.readouterr().err and len(server.messages) == 2
    assert main(["cancel-invitation", str(plan_file), "nothing-like-it", "--yes"]) == 2
    assert "invitations sent for this release: presentation" in capsys.readouterr().err
    assert main(["cancel-invitation", str(plan_file), "presentation", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 accepted" in out
    cancels = server.messages[2:]
    assert sorted(m.rcpt_tos[0] for m in cancels) == ["ada@vega.example.com", "dana@vega.example.com"]
    for accepted in cancels:
        _, cal, method = calendar_of(accepted.data)
        assert method == "CANCEL" and int(event(cal)["SEQUENCE"]) == 1
        assert str(event(cal)["SUMMARY"]) == "Vega 2.0.0: the release presented"
    assert main(["cancel-invitation", str(plan_file), "presentation", "--yes"]) == 0
    assert len(server.messages) == 4


async def test_a_past_event_is_skipped_and_the_rest_of_the_plan_sent(tmp_path, server):
    """Days after the presentation, a send (retrying other communiques) sends nothing for it."""
    plan_file = write(tmp_path / "plan", server.port, start="2020-01-06T09:00:00")
    with open(plan_file, "a", encoding="utf-8") as handle:
        handle.write('[[communiques]]\nid = "news"\nto = ["exec"]\nsubject = "News"\nbody = "Hello"\n')
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
    summary = await send(plan_file, ledger)
    assert [s.communique_id for s in summary.skipped] == ["presentation"]
    assert "in the past" in summary.skipped[0].reason
    assert len(server.messages) == 2 and all(b"text/calendar" not in m.data for m in server.messages)
    assert store.versions(ledger, "2.0.0", "presentation") == []


async def test_an_update_that_stopped_half_way_is_finished_by_the_next_send_never_doubled(tmp_path, server):
    from faulty_mailserver import TempFail

    plan_file = write(tmp_path / "plan", server.port)
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
    await send(plan_file, ledger)
    write(tmp_path / "plan", server.port, start="2031-03-05T10:30:00")
    server.faults["ada@vega.example.com"] = TempFail(times=None)  # every try of this run: deferred
    summary = await send(plan_file, ledger, backoff_base=0.01, backoff_max=0.02)
    assert summary.exit_code == 1
    assert {d.recipient_key: d.state for d in ledger.deliveries("2.0.0", "presentation#1")} == {
        "dana@vega.example.com": "accepted", "ada@vega.example.com": "deferred"}
    server.faults.clear()
    assert (await send(plan_file, ledger)).exit_code == 0
    updates = [m for m in server.messages[2:] if b"SEQUENCE:1" in m.data]
    assert sorted(m.rcpt_tos[0] for m in updates) == ["ada@vega.example.com", "dana@vega.example.com"]
    assert (await send(plan_file, ledger)).exit_code == 0
    assert len([m for m in server.messages if b"SEQUENCE:1" in m.data]) == 2


def test_status_says_where_each_invitation_stands(tmp_path, server, capsys):
    import json

    from relcomm_tui.commands.main import main

    plan_file = write(tmp_path / "plan", server.port)
    assert main(["send", str(plan_file), "--yes"]) == 0
    write(tmp_path / "plan", server.port, start="2031-03-05T10:30:00")
    assert main(["send", str(plan_file), "--yes"]) == 0
    capsys.readouterr()
    assert main(["status", str(plan_file)]) == 0
    out = capsys.readouterr().out
    assert ("invitation sequence 1, updated 1 time(s): Vega 2.0.0: the release presented, "
            "Wed 5 Mar 2031 10:30-11:15 Europe/Berlin (09:30 UTC)") in out
    assert "presentation#1" in out
    assert main(["status", str(plan_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [v["sequence"] for v in data["invitations"]["presentation"]] == [0, 1]
    assert data["invitations"]["presentation"][0]["uid"] == data["invitations"]["presentation"][1]["uid"]


def test_hostile_title_place_and_names_cannot_add_to_the_event(tmp_path):
    """Line breaks, ';' ',' ':' and a BEGIN in the title, the place or a name stay text inside one
    property: the message still has one event, one attendee (its recipient) and one organizer."""
    from relcomm_tui.compose import render

    folder = tmp_path / "plan"
    plan_file = write(folder, 2525, people=['"Eve; ROLE=CHAIR:mailto:boss@x.example" <eve@vega.example.com>'],
                      location='Room B\\r\\nATTENDEE:mailto:evil@x.example\\nEND:VEVENT\\nBEGIN:VEVENT')
    text = plan_file.read_text().replace("[communiques.invitation]\n", "[communiques.invitation]\n"
                                         'title = "Talk\\r\\nATTENDEE:mailto:evil2@x.example\\nBEGIN:VTODO"\n', 1)
    plan_file.write_text(text)
    plan = load_plan(plan_file)
    communique = plan.communique("presentation")
    group, recipient = plan.audience(communique)[0]
    message = render(plan, communique, group, recipient, message_id="<relcomm.x@vega.example.com>").message
    _, cal, _ = calendar_of(message.as_bytes())
    (vevent,) = cal.walk("VEVENT")
    assert not cal.walk("VTODO")
    attendees = vevent.get("ATTENDEE")
    assert not isinstance(attendees, list) and str(attendees) == "mailto:eve@vega.example.com"
    assert attendees.params["ROLE"] == "REQ-PARTICIPANT" and attendees.params["CN"].startswith("Eve; ROLE=CHAIR")
    assert "evil" not in str(vevent["ORGANIZER"])
    assert str(vevent["LOCATION"]).startswith("Room B") and "END:VEVENT" in str(vevent["LOCATION"])
    assert str(vevent["SUMMARY"]).startswith("Talk") and "ATTENDEE:mailto:evil2" in str(vevent["SUMMARY"])


def test_a_test_send_carries_the_invitation_under_a_throwaway_uid(tmp_path, server, capsys):
    from relcomm_tui.commands.main import main

    plan_file = write(tmp_path / "plan", server.port)
    assert main(["send", str(plan_file), "--test", "me@vega.example.com"]) == 0
    (accepted,) = server.messages
    assert accepted.rcpt_tos == ["me@vega.example.com"]
    _, cal, method = calendar_of(accepted.data)
    assert method == "REQUEST" and str(event(cal)["UID"]).startswith("preview.")
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
    assert store.versions(ledger, "2.0.0", "presentation") == []  # the real event does not exist yet


def test_the_recorded_event_never_carries_one_persons_name_or_a_template(tmp_path):
    from relcomm_tui.compose.invited import plan_event

    plan_file = write(tmp_path / "plan", 2525)
    text = plan_file.read_text()
    plan_file.write_text(text.replace("[communiques.invitation]\n",
                                      '[communiques.invitation]\ntitle = "For {{ recipient.name }}"\n'))
    plan = load_plan(plan_file)
    assert plan_event(plan, plan.communique("presentation")).title == "Vega 2.0.0: the release presented"
    plan_file.write_text(text.replace('subject = "Vega {{ release.version }}: the release presented"',
                                      'subject = "Hi {{ recipient.name }}"'))
    plan = load_plan(plan_file)
    assert plan_event(plan, plan.communique("presentation")).title == "Vega 2.0.0: presentation"


async def test_a_send_after_the_invitation_left_the_plan_says_how_to_cancel_it(tmp_path, server):
    plan_file = write(tmp_path / "plan", server.port)
    ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
    await send(plan_file, ledger)
    text = plan_file.read_text(encoding="utf-8")
    plan_file.write_text(text.split("[communiques.invitation]")[0], encoding="utf-8")  # invitation removed
    plan_file.write_text(plan_file.read_text().replace("{{ invitation.start }}", "soon"), encoding="utf-8")
    summary = await send(plan_file, ledger)
    assert len(server.messages) == 2  # nothing new: the communique went to everyone already
    (note,) = summary.skipped
    assert note.communique_id == "presentation"
    assert "its invitation is gone from the plan" in note.reason
    assert "relcomm cancel-invitation PLAN presentation --yes" in note.reason
