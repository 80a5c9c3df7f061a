"""The checklist screen, driven through Pilot on a real copy of the Orion sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList, Static

from relcomm_tui.plan import consent
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens import checklist as checklist_module
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from relcomm_tui.tui.screens.preview import PreviewScreen
from tui_helpers import orion, settle, text_of, user_config  # noqa: F401

SIZE = (80, 24)


async def review_all(pilot, screen: ChecklistScreen) -> None:
    table = screen.query_one("#groups", DataTable)
    table.focus()
    table.move_cursor(row=0)
    for _ in range(table.row_count):
        await pilot.press("space")  # marks the row and moves down
    await pilot.pause()


async def test_review_mark_is_remembered_across_restarts(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChecklistScreen)
        assert screen.reviewed == set()
        await pilot.press("space")
        assert screen.reviewed == {"customers"}
        table = screen.query_one("#groups", DataTable)
        assert table.get_cell("customers", "reviewed").plain == "✓"
    plan = app.plan
    with Ledger.open(plan.state_dir) as ledger:
        assert ledger.reviewed_groups(plan.release.version, plan.digest) == {"customers"}

    again = build_app(orion)
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = again.screen
        assert screen.reviewed == {"customers"}
        assert screen.query_one("#groups", DataTable).get_cell("customers", "reviewed").plain == "✓"
        # Space again takes the mark back, and that is stored too.
        screen.query_one("#groups", DataTable).move_cursor(row=0)
        await pilot.press("space")
        assert screen.reviewed == set()
    with Ledger.open(plan.state_dir) as ledger:
        assert ledger.reviewed_groups(plan.release.version, plan.digest) == set()


async def test_send_is_locked_with_the_reason_until_the_checklist_is_clear(orion: Path):
    app = build_app(orion)
    opened: list[bool] = []
    app.action_open_send = lambda: opened.append(True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        errors = [f for f in screen.findings if f.severity == "error"]
        assert errors == [], f"the Orion sample should be clean: {errors}"
        assert screen.gate is not None and screen.gate.ok
        status = text_of(screen.query_one("#send-status", Static))
        assert status.startswith("Send locked:")
        assert "5 required groups not reviewed" in status
        assert screen.check_action("send", ()) is None  # greyed in the Footer, not hidden
        assert screen.active_bindings["s"].enabled is False
        await pilot.press("s")
        assert opened == []

        await review_all(pilot, screen)
        assert screen.send_lock is None
        assert screen.active_bindings["s"].enabled is True
        assert "Ready to send" in text_of(screen.query_one("#send-status", Static))
        await pilot.press("s")
        assert opened == [True]


async def test_errors_and_a_failing_gate_keep_send_locked(orion: Path):
    gate = orion.parent / "scripts" / "release-ok.sh"
    gate.write_text("#!/bin/sh\necho 'canary unhealthy'\nexit 1\n")
    consent.allow(load_plan(orion))  # consent covers the script's content: the engineer allows this one
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await review_all(pilot, screen)
        assert screen.gate is not None and not screen.gate.ok
        assert screen.send_lock is not None and "gate not passed" in screen.send_lock
        assert "not reviewed" not in screen.send_lock
        assert "gate ✗ not passed" in text_of(screen.query_one("#release", Static))


async def test_a_changed_plan_must_be_reviewed_again(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await review_all(pilot, app.screen)
        assert len(app.screen.reviewed) == 6
        assert app.screen.query_one("#review-note").display is False

    orion.write_text(orion.read_text().replace('name = "Sales"', 'name = "Sales and partners"'))
    again = build_app(orion)
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = again.screen
        assert screen.reviewed == set()
        note = screen.query_one("#review-note", Static)
        assert note.display is True
        assert "changed since it was reviewed" in text_of(note)
        assert "6 required groups" not in (screen.send_lock or "")
        assert "5 required groups not reviewed" in (screen.send_lock or "")


async def test_reload_key_picks_up_an_edit_and_resets_review(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space")
        assert app.screen.reviewed == {"customers"}
        orion.write_text(orion.read_text() + "\n# edited after review\n")
        await pilot.press("r")
        await settle(pilot)
        assert app.screen.reviewed == set()
        assert app.screen.query_one("#review-note").display is True


async def test_findings_jump_to_the_group_and_to_the_communique(orion: Path):
    text = orion.read_text()
    # A required group nobody writes to, and a placeholder left in a template.
    text = text.replace('[[communiques]]', '[[stakeholders]]\nid = "legal"\nname = "Legal"\nrequired = true\n'
                        'members = ["Lee Gal <legal@orion.example.com>"]\n\n[[communiques]]', 1)
    orion.write_text(text)
    template = orion.parent / "templates" / "internal.md.j2"
    template.write_text(template.read_text() + "\nTODO: add the support macros\n")

    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        group_finding = next(i for i, f in enumerate(screen.findings) if f.group_id == "legal")
        communique_finding = next(i for i, f in enumerate(screen.findings)
                                  if f.communique_id == "support-briefing" and f.id == "placeholder-left")
        findings = screen.query_one("#findings", OptionList)

        await pilot.press("f")
        assert findings.has_focus
        findings.highlighted = group_finding
        await pilot.press("enter")
        table = screen.query_one("#groups", DataTable)
        assert table.has_focus
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == "legal"

        await pilot.press("f")
        findings.highlighted = communique_finding
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)
        assert app.screen.communique_id == "support-briefing"
        # Rendered for someone in the group the finding names, so the TODO is right there.
        assert "TODO" in app.screen.rendered.text
        assert app.screen.target_key in {m.key for m in app.plan.group(screen.findings[communique_finding].group_id).members}
        await pilot.press("escape")
        assert app.screen is screen


async def test_checks_that_crash_show_an_error_instead_of_crashing(orion: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(plan, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(checklist_module, "run_checks", broken)
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChecklistScreen)
        assert screen.checks_error and "disk on fire" in screen.checks_error
        assert "could not run" in str(screen.query_one("#findings-box").border_title)
        assert "the checks could not run" in (screen.send_lock or "")


async def test_help_lists_the_screen_keys(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        from relcomm_tui.tui.dialogs.help import HelpDialog

        assert isinstance(app.screen, HelpDialog)
        keys = dict(app.screen.rows)
        assert any("reviewed" in text for text in keys.values())
        assert any("Send" in text for text in keys.values())
        await pilot.press("escape")
        assert isinstance(app.screen, ChecklistScreen)


async def test_palette_offers_the_screen_actions_and_themes(orion: Path, user_config: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert any(title.startswith("Preview") for title in titles)
        assert any(title.startswith("Review") for title in titles)
        assert {"Theme: dark", "Theme: light", "Theme: high-contrast"} <= set(titles)
        light = next(c for c in app.get_system_commands(app.screen) if c.title == "Theme: light")
        light.callback()
        await pilot.pause()
        assert app.theme == "relcomm-light"
    assert 'theme = "relcomm-light"' in (user_config / "config.toml").read_text()
    again = build_app(orion)
    async with again.run_test(size=SIZE) as pilot:
        assert again.theme == "relcomm-light"


async def test_unknown_theme_falls_back_and_says_so(orion: Path):
    app = build_app(orion, theme="no-such-theme")
    assert app.theme == "relcomm-dark"
    assert any("Unknown theme 'no-such-theme'" in message for message, _ in app.startup_notes)
    assert build_app(orion, theme="high-contrast").theme == "relcomm-high-contrast"


def test_relcomm_plan_with_a_broken_plan_says_why_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    from relcomm_tui.commands.app import main

    plan = tmp_path / "plan.toml"
    plan.write_text('format = 1\n[release]\nname = "X"\nversion = 1.0\n')
    assert main([str(plan)]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded" in err and "plan.toml" in err
    assert "Traceback" not in err
    assert main([str(tmp_path / "missing.toml")]) == 2
