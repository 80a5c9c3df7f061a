"""The preview screen: per-recipient rendering, live re-render on file changes, errors in place."""

from __future__ import annotations

from pathlib import Path

from textual.containers import VerticalScroll
from textual.widgets import Static

from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.preview import PreviewScreen
from tui_helpers import orion, settle, text_of, user_config, wait_until  # noqa: F401

SIZE = (80, 24)


async def open_preview(pilot) -> PreviewScreen:
    await settle(pilot)
    await pilot.press("p")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, PreviewScreen)
    return screen


async def test_switching_recipient_changes_to_header_and_personal_text(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        assert screen.communique_id == "customer-announcement"
        assert screen.rendered is not None
        assert "ada.lovelace@acme.example.com" in screen.rendered.headers["To"]
        assert "Acme Corp" in screen.rendered.text
        assert "Ada Lovelace" in text_of(screen.query_one("#headers", Static))

        await pilot.press("n")
        await settle(pilot)
        assert "grace.dijkstra@globex.example.com" in screen.rendered.headers["To"]
        assert "Globex" in screen.rendered.text and "Acme Corp" not in screen.rendered.text
        assert "Grace Dijkstra" in text_of(screen.query_one("#headers", Static))
        assert "2/" in text_of(screen.query_one("#target", Static))

        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert "ada.lovelace@acme.example.com" in screen.rendered.headers["To"]
        await pilot.press("N")  # wraps round to the last customer
        await settle(pilot)
        assert "ada.lovelace" not in screen.rendered.headers["To"]


async def test_moving_through_the_list_renders_each_channel(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        seen = {}
        for _ in app.plan.communiques:
            seen[screen.communique_id] = screen.rendered
            await pilot.press("down")
            await settle(pilot)
        assert set(seen) == {c.id for c in app.plan.communiques}
        assert all(rendered is not None for rendered in seen.values()), seen
        assert seen["eng-chat"].payload  # what the webhook will post is shown
        assert "Dana Chief" in seen["exec-briefing"].text


async def test_raw_mime_toggle(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        await pilot.press("m")
        await settle(pilot)
        raw = screen.query_one("#raw", Static)
        assert raw.display and "Content-Type: multipart/alternative" in text_of(raw)
        assert "Subject: Orion 4.2.0 is available" in text_of(raw)
        await pilot.press("m")
        await settle(pilot)
        assert not raw.display and screen.query_one("#headers").display


async def test_editing_a_template_re_renders_live_and_keeps_the_place(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        await pilot.press("n")  # second customer
        await settle(pilot)
        scroll = screen.query_one("#preview", VerticalScroll)
        assert scroll.max_scroll_y >= 3, "the rendered message should be longer than the screen"
        scroll.focus()
        for _ in range(3):
            await pilot.press("down")  # the reader scrolls down three lines, as a user does
        await settle(pilot)
        place = scroll.scroll_y
        assert place == 3
        template = orion.parent / "templates" / "customer.md.j2"
        template.write_text(template.read_text().replace("Nothing is needed from you", "LIVE EDIT: nothing is needed"))
        assert await wait_until(pilot, lambda: screen.rendered is not None and "LIVE EDIT" in screen.rendered.text,
                                seconds=3)
        assert screen.communique_id == "customer-announcement"
        assert "grace.dijkstra@globex.example.com" in screen.rendered.headers["To"]
        await settle(pilot)
        assert scroll.scroll_y == place  # the re-render kept the reader's place


async def test_a_template_error_shows_inline_then_clears(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        template = orion.parent / "templates" / "customer.md.j2"
        good = template.read_text()
        template.write_text(good + "\n{% if release.version %}\nunclosed\n")
        assert await wait_until(pilot, lambda: screen.render_error is not None, seconds=3)
        error = screen.query_one("#render-error", Static)
        assert error.display
        assert "Cannot render this communique" in text_of(error)
        assert "customer.md.j2" in text_of(error)
        assert not screen.query_one("#headers").display

        template.write_text(good)
        assert await wait_until(pilot, lambda: screen.render_error is None and screen.rendered is not None, seconds=3)
        assert not error.display


async def test_a_broken_plan_keeps_the_last_good_one(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(pilot)
        good_digest = app.plan.digest
        orion.write_text(orion.read_text().replace('channel = "email"', 'channel = "carrier-pigeon"', 1))
        plan_error = screen.query_one("#plan-error", Static)
        assert await wait_until(pilot, lambda: plan_error.display, seconds=3)
        assert "plan.toml" in text_of(plan_error)
        assert app.plan.digest == good_digest
        assert screen.rendered is not None  # the last good preview is still there
