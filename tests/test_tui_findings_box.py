"""The findings pane is as tall as its findings (issue 13: four empty rows at 120x40), and never
pushes the send status or the footer off the screen when there are many."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo_journey import screen_text
from relcomm_tui.tui.app import build_app
from tui_helpers import orion, settle, user_config  # noqa: F401


def box_rows(app) -> list[str]:
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if "Findings" in line and line.startswith("╭"))
    bottom = next(i for i in range(top + 1, len(lines)) if lines[i].startswith("╰"))
    return lines[top + 1:bottom]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_no_empty_rows_in_the_findings_pane(orion: Path, size):
    template = orion.parent / "templates" / "internal.md.j2"
    template.write_text(template.read_text() + "\nTODO: add the support macros\n")  # one warning
    app = build_app(orion)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.pause()
        rows = box_rows(app)
        assert rows and not any(row.strip("│ ") == "" for row in rows), rows
        last = screen_text(app).splitlines()
        assert "Send locked" in last[-2] and "? Help" in last[-1]


async def test_many_findings_scroll_inside_the_pane(orion: Path):
    text = orion.read_text()
    for n in range(12):  # twelve groups nobody writes to: twelve findings
        text += f'\n[[stakeholders]]\nid = "extra{n}"\nname = "Extra {n}"\nrequired = true\nmembers = ["X <x{n}@example.com>"]\n'
    orion.write_text(text)
    app = build_app(orion)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert len(app.screen.findings) > 6
        assert "Send locked" in lines[-2] and "? Help" in lines[-1]
        box = app.screen.query_one("#findings-box")
        assert box.region.bottom <= app.size.height - 2
