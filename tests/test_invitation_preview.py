"""The preview shows a communique's calendar invitation as it will be sent: the rendered title, the
time in its zone and in UTC, the place and the link; never the plan's template text."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from relcomm_tui.tui.app import build_app
from tui_helpers import orion, settle, text_of, user_config  # noqa: F401

PRESENTATION = '''
[[communiques]]
id = "exec-invitation"
to = ["exec"]
subject = "{{ release.name }} {{ release.version }} presented"
body = "Hello {{ recipient.name }}, the release is presented {{ invitation.start }}."

[communiques.invitation]
title = "{{ release.name }} {{ release.version }}: the presentation"
start = 2031-03-04T16:00:00
time_zone = "Europe/Berlin"
duration = "1h30m"
location = "Auditorium B"
url = "https://meet.example.com/orion"
'''


async def test_the_preview_shows_the_invitation_rendered(orion: Path):
    with open(orion, "a", encoding="utf-8") as handle:
        handle.write(PRESENTATION)
    app = build_app(orion)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        screen = pilot.app.screen
        screen.select_communique("exec-invitation")
        await settle(pilot)
        assert screen.rendered is not None and screen.rendered.communique_id == "exec-invitation"
        shown = text_of(screen.query_one("#headers", Static))
        assert "Calendar invitation (REQUEST, sequence 0): Orion 4.2.0: the presentation" in shown
        assert "Tue 4 Mar 2031 16:00-17:30 Europe/Berlin (15:00 UTC), 1 hour 30 minutes" in shown
        assert "Auditorium B" in shown and "https://meet.example.com/orion" in shown
        assert "made at the first send" in shown
        assert "{{" not in shown
        assert "presented Tue 4 Mar 2031 16:00-17:30" in screen.rendered.text


def test_a_plan_without_invitations_never_imports_icalendar(tmp_path: Path):
    """icalendar takes a while to import; rendering, checking, the board and the receipts of a plan
    without an invitation must not pay for it (some of them run on the app's UI thread)."""
    import re
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    # The sample without its one invitation: the presentation's communique and its step.
    folder = tmp_path / "orion"
    shutil.copytree(root / "sample_plans" / "orion", folder, ignore=shutil.ignore_patterns(".relcomm"))
    text = (folder / "plan.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?s)\[\[communiques\]\]\nid = "exec-presentation".*?(?=\[\[communiques\]\])', "", text)
    text = re.sub(r'(?s)\[\[steps\]\]\nid = "presentation".*', "", text)
    assert "invitation" not in text
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    code = (
        "import sys\n"
        "from relcomm_tui.plan import load_plan\n"
        "from relcomm_tui.compose import render\n"
        "from relcomm_tui.checks.rules import run_checks\n"
        "import relcomm_tui.app.board, relcomm_tui.delivery.engine, relcomm_tui.receipts.refresh, relcomm_tui.demo.mailserver\n"
        f"p = load_plan({str(folder / 'plan.toml')!r})\n"
        "c = p.communiques[0]\n"
        "g, r = p.audience(c)[0]\n"
        "render(p, c, g, r)\n"
        "run_checks(p, gate=False, secrets=False)\n"
        "print('icalendar' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
