"""The README's demo as the app tests walk it: the Orion sample with the demo's bouncing customers,
an embedded SMTP server that writes delivery reports at once, a webhook receiver, and helpers to
read what the terminal shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from relcomm_tui.commands import demo
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.demo.webhook_receiver import WebhookReceiver

TEMPLATE_MARKS = ("{{", "{%", "}}", "%}")


class Demo:
    def __init__(self, plan: Path, server: LoopbackMailServer, hooks: WebhookReceiver) -> None:
        self.plan, self.server, self.hooks = plan, server, hooks

    def app(self, **options) -> RelcommApp:
        return RelcommApp(load_plan(self.plan), **options)


@pytest.fixture
def demo_plan(tmp_path: Path, user_config: Path):  # noqa: F811 (user_config from tui_helpers)
    folder = demo.prepare_folder(tmp_path / "demo")
    state = folder / ".relcomm"
    with LoopbackMailServer(maildir=state / "demo-server" / "delivered", write_reports_to=state / "receipts",
                            report_delay=(0.0, 0.0), mdn_fraction=0.4, seed=42) as server, \
            WebhookReceiver() as hooks:
        plan = demo.write_plan(folder, smtp_port=server.port, webhook_url=hooks.url("/hooks/eng-chat"))
        demo.allow_own_gate(plan)
        yield Demo(plan, server, hooks)


def screen_text(app: App) -> str:
    """Every line the terminal shows now (the top screen, dialogs over what is beneath)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def template_source_in(text: str) -> list[str]:
    """Lines of `text` that show template source."""
    return [line for line in text.splitlines() if any(mark in line for mark in TEMPLATE_MARKS)]


async def wait_for(pilot: Pilot, condition, *, seconds: float = 10.0) -> None:
    """For what only a server or a timer brings: check, let the loop run, repeat."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), "condition not reached in time"
