"""One rule for "may this plan be sent now" (app.readiness): the app's checklist and `relcomm send`
give the same answer over a matrix of plans and states, against a real loopback SMTP server.

Each case builds a plan and a state, asks the app (the real Textual app through Pilot: the
checklist's lock) and then the command line (`relcomm send --yes` through main()), and compares:
the verdict (ready: it sends; locked: exit 2 naming every reason the app names; done: nothing to
send) and the reasons' words.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from plan_helpers import base_plan, write_plan
from relcomm_tui.app.readiness import DONE, LOCKED, READY
from relcomm_tui.app.review import groups_to_review, sign_off
from relcomm_tui.commands.main import main
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from tui_helpers import user_config  # noqa: F401

CASES = ["errors", "unreviewed", "reviewed", "stale-review", "gate-failing", "no-gate", "fully-sent"]
EXPECTED = {"errors": (LOCKED, {"errors"}), "unreviewed": (LOCKED, {"not-reviewed"}), "reviewed": (READY, set()),
            "stale-review": (LOCKED, {"not-reviewed"}), "gate-failing": (LOCKED, {"errors", "gate-failed"}),
            "no-gate": (READY, set()), "fully-sent": (DONE, set())}


@pytest.fixture
def server(tmp_path: Path):
    with LoopbackMailServer(maildir=tmp_path / "maildir") as running:
        yield running


def review(plan_file: Path) -> None:
    plan = load_plan(plan_file)
    with Ledger.open(plan.state_dir) as ledger:
        sign_off(ledger, plan, groups_to_review(plan, []))


def build(case: str, folder: Path, port: int) -> Path:
    """The plan and its state for one case of the matrix."""
    data = base_plan()
    data["transport"]["smtp"]["port"] = port
    if case == "errors":
        data["communiques"][1]["body"] = "Hello {{ recipient.name }}, TODO write this.\n"
    if case == "gate-failing":
        data["release"]["gate"] = "false"
    if case == "no-gate":
        del data["release"]["gate"]
    plan_file = write_plan(folder, data)
    if case != "unreviewed":
        review(plan_file)
    if case == "stale-review":
        data["communiques"][1]["body"] = "Hello {{ recipient.name }}, version {{ release.version }} is live now.\n"
        write_plan(folder, data)  # edited after the review: the sign-offs are for the old digest
    return plan_file


async def relcomm(*argv: str) -> int:
    """main() in a thread: `relcomm send` runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))


async def app_answer(plan_file: Path):
    app = RelcommApp(load_plan(plan_file), allow_commands=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ChecklistScreen)
        answer = screen.readiness()
        status = str(screen.query_one("#send-status").render())
        send_key = screen.check_action("send", ())
        notes = ""
        if answer.verdict == READY:  # what the confirm dialog says before anything is sent
            await pilot.press("s")
            await pilot.pause()
            notes = " ".join(str(w.render()) for w in app.screen.query(".confirm-note"))
    return answer, status, send_key, notes


async def cli_answer(plan_file: Path, server: LoopbackMailServer, capsys, monkeypatch) -> tuple[str, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: nothing can be typed
    before = len(server.messages)
    code = await relcomm("send", str(plan_file), "--yes", "--allow-commands")
    out, err = capsys.readouterr()
    sent = len(server.messages) - before
    if code == 2:
        assert sent == 0
        return LOCKED, out, err
    if "nothing left to send" in out:
        assert sent == 0 and code == 0
        return DONE, out, err
    assert code == 0 and sent > 0, (code, out, err)
    return READY, out, err


@pytest.mark.parametrize("case", CASES)
async def test_the_app_and_relcomm_send_give_the_same_answer(case: str, tmp_path: Path, server, user_config,
                                                               capsys, monkeypatch):
    plan_file = build(case, tmp_path / "plan", server.port)
    if case == "fully-sent":
        assert await relcomm("send", str(plan_file), "--yes", "--allow-commands") == 0
    capsys.readouterr()
    app, status, send_key, notes = await app_answer(plan_file)
    verdict, out, err = await cli_answer(plan_file, server, capsys, monkeypatch)

    expected_verdict, expected_codes = EXPECTED[case]
    assert app.verdict == verdict == expected_verdict, (case, app, out, err)
    assert set(app.codes()) == expected_codes
    for reason in app.reasons:  # the same words on both sides
        assert reason.text in err and reason.text in status
    if verdict == LOCKED:
        assert send_key is None  # greyed: the checklist's `s` does nothing
    if case == "no-gate":  # sent with a warning, the same words in the app and headless
        (warning,) = app.warnings
        assert warning.text in err and warning.text in status and warning.text in notes
    if case == "fully-sent":
        assert status.startswith("Sent ") and "Ready to send" not in status and send_key


async def test_a_headless_send_after_relcomm_review_reopens_on_the_summary(tmp_path: Path, server, user_config,
                                                                           capsys):
    """`relcomm review` then `relcomm send`: the app opens on where the send stands, not on
    "N required groups not reviewed" or "Ready to send"."""
    plan_file = write_plan(tmp_path / "plan", base_plan() | {
        "transport": {"smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"}}})
    assert await relcomm("send", str(plan_file), "--yes", "--allow-commands") == 2  # not reviewed yet
    assert "1 required group not reviewed" in capsys.readouterr().err
    assert await relcomm("review", str(plan_file)) == 0
    assert await relcomm("send", str(plan_file), "--yes", "--allow-commands") == 0
    _, status, send_key, _ = await app_answer(plan_file)
    assert status.startswith("Sent ") and "3/3 accepted" in status and "c receipts" in status
    assert "not reviewed" not in status and "Ready to send" not in status and send_key
