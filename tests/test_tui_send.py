"""The send screen through Pilot, against a real SMTP server on loopback and a real ledger.

Each test sends a private copy of the Orion sample (its SMTP port pointed at the test's server, its
chat webhook at a test receiver) and checks both what the screen shows and what the server got.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from relcomm_tui.store.ledger import ACCEPTED, FINAL_STATES as FINAL, IN_DOUBT, QUEUED, REJECTED, SENDING, Ledger
from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.app.review import groups_to_review, sign_off
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.dialogs.ask import AskDialog
from relcomm_tui.tui.dialogs.confirm_quit import ConfirmQuitDialog
from relcomm_tui.tui.dialogs.confirm_send import ConfirmSendDialog
from relcomm_tui.tui.dialogs.password import PasswordDialog
from relcomm_tui.tui.screens.send import SendScreen
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from tui_helpers import SAMPLE, text_of, user_config, without_script  # noqa: F401
from waits import parked_on_pause

VERSION = "4.2.0"


@pytest.fixture
def server(tmp_path: Path):
    with FaultyMailServer(maildir=tmp_path / "maildir") as running:
        yield running


@pytest.fixture
def hooks():
    with WebhookReceiver() as running:
        yield running


def copy_orion(tmp_path: Path, server: FaultyMailServer, hooks: WebhookReceiver, *, smtp_extra: str = "") -> Path:
    """The Orion sample, sending to this test's servers; its gate passes as shipped."""
    folder = tmp_path / "orion"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns(".relcomm"))
    plan = folder / "plan.toml"
    without_script(plan)  # these tests send everything at once; the script has test_tui_script.py
    text = plan.read_text(encoding="utf-8")
    assert "port = 2525" in text and "http://127.0.0.1:8765/" in text
    text = text.replace("port = 2525", f"port = {server.port}" + smtp_extra)
    text = text.replace("http://127.0.0.1:8765/", hooks.url("/"))
    plan.write_text(text, encoding="utf-8")
    return plan


@pytest.fixture
def orion_plan(tmp_path: Path, server: FaultyMailServer, hooks: WebhookReceiver, user_config: Path) -> Path:
    return copy_orion(tmp_path, server, hooks)


def make_app(plan: Path, tmp_path: Path) -> RelcommApp:
    # The engineer allowed the sample's gate (the consent dialog has its own tests) and signed off
    # every required group (the checklist's review has its own tests): the plan may be sent.
    loaded = load_plan(plan)
    with Ledger.open(tmp_path / "state") as ledger:
        sign_off(ledger, loaded, groups_to_review(loaded, []))
    return RelcommApp(loaded, state_dir=tmp_path / "state", allow_commands=True)


async def checked(pilot: Pilot) -> None:
    """Let the checklist's checks (gate included) finish: sending waits for them (app.readiness)."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def send_done(pilot: Pilot) -> None:
    """Await the send worker (no sleeping), then let the screen handle the run's end."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete([w for w in pilot.app.workers if w.group.startswith("send")])
        await pilot.pause()


async def until(pilot: Pilot, condition, seconds: float = 10.0) -> None:
    """For what the server's pace brings (progress mid-send): check, let the loop run, repeat."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), "condition not reached in time"


async def confirm(pilot: Pilot, typed: str = VERSION) -> None:
    dialog = pilot.app.screen
    assert isinstance(dialog, ConfirmSendDialog)
    dialog.query_one(Input).value = typed
    await pilot.press("enter")
    await pilot.pause()


def email_addresses(app: RelcommApp) -> dict[str, str]:
    """delivery id -> address, for every email delivery the screen shows."""
    plan = app.plan
    ledger = app.ledger
    return {r.id: r.recipient_key for r in ledger.deliveries(plan.release.version) if r.channel == "email"}


def state_cell(screen: SendScreen, ident: str) -> str:
    return screen.query_one("#deliveries", DataTable).get_cell(ident, "state").plain


async def test_confirmation_needs_the_exact_version_then_everything_is_accepted_once(
        orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    app = make_app(orion_plan, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        app.action_open_send()
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmSendDialog)
        question = text_of(dialog.query_one("#confirm-question"))
        # Deliveries, counted as the send screen counts them (app.board); the follow-up is named apart.
        assert question == "Send Orion 4.2.0: 40 deliveries over 8 communiques?"
        assert "customer-reminder" in text_of(dialog.query_one(".confirm-note"))
        # The empty field must not look filled in (over SSH a dim placeholder reads like typed text).
        field = dialog.query_one("#confirm-version", Input)
        assert field.value == "" and field.placeholder == "type 4.2.0 here"
        for wrong in ("", "4.2", "4.2.0 ", "v4.2.0"):
            await confirm(pilot, wrong)
            assert app.screen is dialog, f"{wrong!r} must not confirm"
            assert text_of(dialog.query_one("#confirm-error"))
        assert server.messages_accepted == 0
        await confirm(pilot, VERSION)
        screen = app.screen
        assert isinstance(screen, SendScreen)
        await send_done(pilot)

        addresses = email_addresses(app)
        assert len(addresses) == 35  # 24 customers + 7 support and sales + 2 operations + 2 invited executives
        assert all(state_cell(screen, ident) == "accepted" for ident in addresses)
        assert screen.counts[ACCEPTED] >= len(addresses)
        # Exactly one copy per delivery at the server (ENVID = delivery id).
        received = Counter(message.envid for message in server.messages)
        envelope_ids = {app.ledger.delivery(ident).envelope_id for ident in addresses}
        assert set(received) == envelope_ids and set(received.values()) == {1}
        assert "finished" in text_of(screen.query_one("#send-head"))
        # The two manual steps (calls to the executives) wait for the engineer to tick them.
        overall = screen.query_one("#overall-bar")
        manual = [ident for ident, row in screen.rows.items() if row.channel == "manual"]
        assert len(manual) == 2 and overall.total == len(screen.rows)
        assert overall.progress == len(screen.rows) - 2
        table = screen.query_one("#deliveries", DataTable)
        for number, ident in enumerate(manual):
            table.move_cursor(row=table.get_row_index(ident))
            await pilot.pause()
            await pilot.press("enter" if number == 0 else "o")
            await pilot.pause()
            instructions = text_of(app.screen.query_one("#manual-instructions"))
            assert "Call " in instructions
            await pilot.press(*"spoke at 17:40", "enter")
            await pilot.pause()
            assert screen.rows[ident].state in FINAL
            assert "spoke at 17:40" in (app.ledger.delivery(ident).reply or "")
        assert overall.progress == overall.total
        assert text_of(screen.query_one("#send-status")) == "Every delivery is done."


async def test_escape_sends_nothing(orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    app = make_app(orion_plan, tmp_path)
    async with app.run_test() as pilot:
        await checked(pilot)
        app.action_open_send()
        await pilot.pause()
        await pilot.press("4", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmSendDialog, SendScreen))
        assert server.messages_accepted == 0
        assert not any(app.ledger.counts(VERSION).values())


async def test_a_permanent_failure_shows_rejected_with_the_servers_words(
        orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 Priya has left the company")
    app = make_app(orion_plan, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        app.push_screen(SendScreen(start=True))
        await send_done(pilot)
        screen = app.screen
        assert isinstance(screen, SendScreen)
        rejected = [ident for ident, row in screen.rows.items() if row.state == REJECTED]
        assert len(rejected) == 1
        ident = rejected[0]
        table = screen.query_one("#deliveries", DataTable)
        assert state_cell(screen, ident) == "rejected"
        assert "Priya has left the company" in table.get_cell(ident, "reply").plain
        assert all(table.get_cell(i, "reply").plain == "" for i, row in screen.rows.items() if row.state == ACCEPTED)
        assert sum(row.state == ACCEPTED for row in screen.rows.values() if row.channel == "email") == 34
        # The detail pane names the server's words for the highlighted row.
        table.move_cursor(row=table.get_row_index(ident))
        await pilot.pause()
        detail = text_of(screen.query_one("#detail"))
        assert "550" in detail and "Priya has left the company" in detail and "Message-ID" in detail
        assert "f retries" in text_of(screen.query_one("#send-status"))
        # f retries the failed one; the server refuses again, and nothing else is sent twice.
        await pilot.press("f")
        await send_done(pilot)
        assert state_cell(screen, ident) == "rejected"
        assert screen.rows[ident].attempts == 2
        assert set(Counter(m.envid for m in server.messages).values()) == {1}


async def test_pause_stops_progress_and_resume_continues(tmp_path: Path, hooks: WebhookReceiver, user_config: Path):
    # Slow replies so the send lasts long enough to pause it half-way.
    with FaultyMailServer(maildir=tmp_path / "maildir", data_delay=0.05) as server:
        plan = copy_orion(tmp_path, server, hooks)
        app = make_app(plan, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await checked(pilot)
            app.push_screen(SendScreen(start=True))
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SendScreen)
            await until(pilot, lambda: server.messages_accepted >= 4)
            await pilot.press("space")
            assert screen.paused and screen.engine.paused
            # Messages already talking to the server finish; then nothing more goes out.
            await until(pilot, lambda: screen.counts[SENDING] == 0 and not screen._pending)
            held = server.messages_accepted
            assert held < 35
            # The pause took effect: a worker waits on it (an engine ignoring the pause has none),
            # and the server then stays quiet for 100 looks in a row (not a fixed sleep).
            engine = screen.engine
            await until(pilot, lambda: parked_on_pause(engine) >= 1, seconds=30)
            quiet = 0
            while quiet < 100:
                await pilot.pause(0.005)
                quiet = quiet + 1 if server.messages_accepted == held and screen.counts[SENDING] == 0 else 0
                assert server.messages_accepted == held, "a message went out while paused"
            assert "Paused" in text_of(screen.query_one("#send-status"))
            await pilot.press("space")
            assert not screen.paused
            await send_done(pilot)
            assert server.messages_accepted == 35
            assert set(Counter(m.envid for m in server.messages).values()) == {1}


async def test_quitting_mid_send_asks_then_stops_cleanly_and_reopening_shows_where_things_stand(
        tmp_path: Path, hooks: WebhookReceiver, user_config: Path):
    with FaultyMailServer(maildir=tmp_path / "maildir", data_delay=1.0) as server:
        plan = copy_orion(tmp_path, server, hooks)
        app = make_app(plan, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await checked(pilot)
            app.push_screen(SendScreen(start=True))
            await until(pilot, lambda: server.messages_accepted >= 2)
            screen = app.screen
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmQuitDialog)
            await pilot.press("n")  # keep sending
            await pilot.pause()
            assert app.screen is screen and screen.running
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmQuitDialog)
            await pilot.press("y")
            await send_done(pilot)
        assert not app.is_running  # the app exited once the engine had stopped
        sent = server.messages_accepted
        assert 2 <= sent < 35

        # The ledger knows exactly what happened: nothing left `sending`, each accepted one at the server once.
        # (Email only: the webhook, page and pager deliveries run alongside and are not at this server.)
        emails = {c.id for c in load_plan(plan).communiques if c.channel == "email"}
        with Ledger.open(tmp_path / "state", recover=False) as ledger:
            every = ledger.deliveries(VERSION)
        records = [r for r in every if r.communique_id in emails]
        states = Counter(r.state for r in records)
        assert states[SENDING] == 0 and states[ACCEPTED] == sent and states[QUEUED] >= 1
        accepted_ids = {r.envelope_id for r in records if r.state == ACCEPTED}
        assert Counter(m.envid for m in server.messages) == Counter(accepted_ids)

        reopened = make_app(plan, tmp_path)
        async with reopened.run_test(size=(80, 24)) as pilot:
            await checked(pilot)
            reopened.action_open_send()  # history: straight to the send screen, nothing sent
            await pilot.pause()
            screen = reopened.screen
            assert isinstance(screen, SendScreen) and not screen.running
            for record in every:
                assert screen.rows[record.id].state == record.state
            assert screen.counts[ACCEPTED] == sum(1 for r in every if r.state == ACCEPTED)
            assert f"{sum(1 for r in every if r.state in FINAL)}/" in text_of(screen.query_one("#send-head"))
            assert "not sent yet: space sends them" in text_of(screen.query_one("#send-status"))
            # Continuing asks for the version again, then sends only the rest.
            await pilot.press("space")
            await pilot.pause()
            await confirm(pilot)
            await send_done(pilot)
            assert server.messages_accepted == 35
            assert set(Counter(m.envid for m in server.messages).values()) == {1}


async def test_reopening_shows_in_doubt_rows_highlighted_and_explained(
        orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    server.faults["noor.haddad@orion.example.com"] = PermFail()
    app = make_app(orion_plan, tmp_path)
    async with app.run_test() as pilot:
        await checked(pilot)
        app.push_screen(SendScreen(start=True))
        await send_done(pilot)
        ident = next(i for i, row in app.screen.rows.items() if row.recipient.startswith("Noor"))
        assert app.screen.rows[ident].state == REJECTED
    # A retry whose process died between recording "sending" and the server's reply leaves this behind.
    with Ledger.open(tmp_path / "state") as ledger:
        ledger.requeue([ident])  # retry failed puts it back in the queue; only then can it be claimed
        ledger.mark_sending([ident])

    reopened = make_app(orion_plan, tmp_path)
    async with reopened.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        reopened.action_open_send()
        await pilot.pause()
        screen = reopened.screen
        assert isinstance(screen, SendScreen)
        assert screen.rows[ident].state == IN_DOUBT and state_cell(screen, ident) == "in doubt"
        assert screen.highlighted_id() == ident
        assert "in doubt" in text_of(screen.query_one("#banner"))
        assert "may have arrived" in text_of(screen.query_one("#detail"))
        # d asks before resending.
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(reopened.screen, AskDialog)
        assert "same Message-ID" in text_of(reopened.screen.query_one("#ask-detail"))
        await pilot.press("n")
        await pilot.pause()
        # m marks it delivered (with a note) and it is never sent again.
        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*"phoned", "enter")
        await pilot.pause()
        assert state_cell(screen, ident) == "marked ✓"
        assert "phoned" in reopened.ledger.delivery(ident).reply
    assert server.messages_for("noor.haddad@orion.example.com") == []


async def test_an_auth_failure_is_one_clear_message_not_a_red_table(
        tmp_path: Path, hooks: WebhookReceiver, user_config: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORION_SMTP_PASSWORD", "wrong")
    with FaultyMailServer(maildir=tmp_path / "maildir", auth=("release-bot", "right")) as server:
        plan = copy_orion(tmp_path, server, hooks, smtp_extra='\nusername = "release-bot"\n'
                          'password = { env = "ORION_SMTP_PASSWORD" }')
        app = make_app(plan, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await checked(pilot)
            app.push_screen(SendScreen(start=True))
            await send_done(pilot)
            screen = app.screen
            assert isinstance(screen, SendScreen)
            assert screen.counts[REJECTED] == 0
            assert "Sending stopped" in text_of(screen.query_one("#banner"))
            assert text_of(screen.query_one("#send-status")).startswith("Stopped:")
            assert server.messages_accepted == 0


async def test_an_unresolvable_password_is_asked_for_masked_and_used(
        tmp_path: Path, hooks: WebhookReceiver, user_config: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ORION_SMTP_PASSWORD", raising=False)
    with FaultyMailServer(maildir=tmp_path / "maildir", auth=("release-bot", "s3cret")) as server:
        plan = copy_orion(tmp_path, server, hooks, smtp_extra='\nusername = "release-bot"\n'
                          'password = { env = "ORION_SMTP_PASSWORD" }')
        app = make_app(plan, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await checked(pilot)
            app.push_screen(SendScreen(start=True))
            await send_done(pilot)
            dialog = app.screen
            assert isinstance(dialog, PasswordDialog)
            assert "ORION_SMTP_PASSWORD" in text_of(dialog.query_one("#password-why"))
            field = dialog.query_one(Input)
            assert field.password
            await pilot.press(*"s3cret", "enter")
            await send_done(pilot)
            assert isinstance(app.screen, SendScreen)
            assert server.messages_accepted == 35
        # Never written down: not in the ledger, not in the plan folder.
        for file in list((tmp_path / "state").rglob("*")) + list(plan.parent.rglob("*")):
            if file.is_file():
                assert b"s3cret" not in file.read_bytes(), file


async def test_test_send_goes_to_the_engineer_alone_with_test_in_the_subject(
        orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    app = make_app(orion_plan, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        app.push_screen(SendScreen())
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#deliveries", DataTable)
        ops = next(ident for ident, row in screen.rows.items() if row.communique_id == "ops-notice")
        table.move_cursor(row=table.get_row_index(ops))
        await pilot.pause()
        await pilot.press("t")
        await send_done(pilot)
        assert [m.rcpt_tos for m in server.messages] == [["deploy-engineer@orion.example.com"]]
        text = server.messages[0].data.decode()
        assert "Subject: [TEST] Orion 4.2.0 deployed to production" in text
        # Outside the deliveries: nothing recorded as sent, every row still queued.
        assert not any(app.ledger.counts(VERSION).values())
        assert all(row.state == QUEUED for row in screen.rows.values())


async def test_a_template_swapped_after_loading_stops_the_send_and_says_which_file(
        orion_plan: Path, tmp_path: Path, server: FaultyMailServer):
    """Issue 10 item 4 in the app: the plan on screen was checked; a template replaced on disk since
    (here by a symlink to a file outside the folder) is never sent, and the banner says what to do."""
    app = make_app(orion_plan, tmp_path)
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE-KEY-CANARY\n", encoding="utf-8")
    template = orion_plan.parent / "templates" / "customer.md.j2"
    template.unlink()
    template.symlink_to(secret)
    async with app.run_test(size=(80, 24)) as pilot:
        await checked(pilot)
        app.push_screen(SendScreen(start=True))
        await send_done(pilot)
        screen = app.screen
        assert isinstance(screen, SendScreen)
        banner = text_of(screen.query_one("#banner"))
        assert "Sending stopped" in banner and "customer.md.j2" in banner and "changed on disk" in banner
        assert "load the plan again" in banner
        assert server.messages_accepted == 0
        assert not any(b"CANARY" in m.data for m in server.messages)
        assert not [r for r in app.ledger.deliveries(VERSION) if r.state in (SENDING, IN_DOUBT, ACCEPTED)]
