"""Raw views are raw (issue 13): raw MIME unwrapped and scrolling sideways; a webhook's raw view is
the exact request (method, URL with secrets hidden, headers, the body as posted); the readable
webhook view does not cut its links."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import OptionList, Static

from demo_journey import screen_text
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import build_app
from tui_helpers import orion, settle, text_of, user_config  # noqa: F401

SIZE = (80, 24)


async def open_preview_of(pilot, communique_id: str):
    app = pilot.app
    await settle(pilot)
    await pilot.press("p")
    await settle(pilot)
    ids = [c.id for c in app.plan.communiques]
    app.screen.query_one("#communiques", OptionList).highlighted = ids.index(communique_id)
    await settle(pilot)
    return app.screen


async def test_raw_mime_is_not_wrapped_and_scrolls_sideways(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        preview = await open_preview_of(pilot, "customer-announcement")
        await pilot.press("m")
        await settle(pilot)
        raw = preview.query_one("#raw", Static)
        text = text_of(raw)
        assert "Disposition-Notification-To: release-receipts@orion.example.com" in text
        assert raw.size.height == text.count("\n") + 1, "one screen line per line of the message"
        box = preview.query_one("#preview")
        assert box.max_scroll_x > 0, "long lines scroll sideways"
        shown = screen_text(app)
        assert "release-receipts@orion.example.com\n" not in shown.replace("│", "").replace(" ", "")


async def test_webhook_raw_view_is_the_exact_request_with_the_secret_hidden(orion: Path, tmp_path: Path,
                                                                          monkeypatch):
    text = orion.read_text()
    orion.write_text(text.replace('url = "http://127.0.0.1:8765/hooks/eng-chat"',
                                  'url = { env = "RELCOMM_CHAT_WEBHOOK" }'))
    app = build_app(orion)
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await open_preview_of(pilot, "eng-chat")
        readable = screen_text(app)
        assert "Release notes: https://releases.orion.example.com/4.2.0.html" in readable, "the link is not cut"
        await pilot.press("m")
        await settle(pilot)
        raw = text_of(preview.query_one("#raw", Static))
        head, _, body = raw.partition("\n\n")
        lines = head.splitlines()
        assert lines[0].startswith("POST http://127.0.0.1:9/…") and "RELCOMM_CHAT_WEBHOOK" in lines[0]
        assert "chat-hook" not in raw, "the secret part of the URL stays hidden"
        assert "Content-Type: application/json" in lines
        assert any(line.startswith("Idempotency-Key: ") for line in lines)
        # The body is what a send posts, byte for byte: a real send to a loopback receiver.
        with WebhookReceiver() as receiver:
            plan = load_plan(orion)
            monkeypatch.setenv("RELCOMM_CHAT_WEBHOOK", receiver.url("/chat-hook"))
            with Ledger.open(tmp_path / "state") as ledger:
                await SendEngine(plan, ledger, only=["eng-chat"]).run()
            assert [r.body.decode() for r in receiver.requests] == [body]
        assert "*Orion 4.2.0* is live in production" in json.loads(body)["text"]
