"""Each screen's styles stay on that screen (issue 13): `preview.tcss` once styled `#communiques`
app-wide, so after a visit to the preview the send screen's bars collapsed into a 26-column box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import DataTable

import relcomm_tui.tui as tui
from relcomm_tui.store.ledger import REJECTED
from faulty_mailserver import FaultyMailServer as LoopbackMailServer, PermFail
from relcomm_tui.tui.screens.preview import PreviewScreen
from relcomm_tui.tui.screens.send import SendScreen
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from test_snapshots_send import steady_ids  # noqa: F401
from test_tui_send import copy_orion, hooks, make_app, send_done, server  # noqa: F401
from tui_helpers import settle, user_config  # noqa: F401

SIZES = [(80, 24), (120, 40)]
OWNER = {"app.tcss": None}


def rules(css: str) -> list[str]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return [selector.strip() for block in re.findall(r"([^{}]+)\{", css) for selector in block.split(",")]


@pytest.mark.parametrize("path", sorted(Path(tui.__file__).parent.rglob("*.tcss")), ids=lambda p: p.name)
def test_every_rule_of_a_screen_file_names_its_screen(path: Path):
    if path.name == "app.tcss":
        return  # the app's own file: Screen, Footer, Toast for every screen, on purpose
    selectors = rules(path.read_text(encoding="utf-8"))
    owner = selectors[0].split()[0].split(".")[0]
    assert owner.endswith(("Screen", "Dialog")), f"{path.name}: first rule {selectors[0]!r} names no screen"
    unscoped = [s for s in selectors if not s.startswith(owner)]
    assert not unscoped, f"{path.name}: rules not scoped to {owner}: {unscoped}"


async def open_send_after_preview(app, pilot) -> SendScreen:
    await settle(pilot)
    await pilot.press("p")
    await settle(pilot)
    assert isinstance(app.screen, PreviewScreen)
    await pilot.press("escape")
    app.push_screen(SendScreen(start=True, show_rate=False))
    await send_done(pilot)
    screen = app.screen
    assert isinstance(screen, SendScreen)
    rejected = next(ident for ident, row in screen.rows.items() if row.state == REJECTED)
    table = screen.query_one("#deliveries", DataTable)
    table.move_cursor(row=table.get_row_index(rejected))
    await pilot.pause()
    return screen


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
async def test_send_bars_keep_their_layout_after_the_preview(tmp_path: Path, server: LoopbackMailServer,
                                                            hooks: WebhookReceiver, user_config: Path, size):
    server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 Priya has left the company")
    app = make_app(copy_orion(tmp_path, server, hooks), tmp_path)
    async with app.run_test(size=size) as pilot:
        screen = await open_send_after_preview(app, pilot)
        bars = screen.query_one("#communiques")
        assert bars.region.width >= size[0] - 2, "the bars span the screen, not the preview's 26-column list"
        assert bars.styles.border_top[0] in ("", "none"), "no border from the preview's list"
        shown = [box for box in screen.query(".communique") if box.region.height and bars.region.contains_region(box.region)]
        assert len(shown) == len(screen.communiques), "every communique's bar is visible"


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_send_after_preview(snap_compare, tmp_path: Path, server: LoopbackMailServer,
                                     hooks: WebhookReceiver, user_config: Path, steady_ids, size):  # noqa: F811
    server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 Priya has left the company")
    app = make_app(copy_orion(tmp_path, server, hooks), tmp_path)

    async def run_before(pilot):
        await open_send_after_preview(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
