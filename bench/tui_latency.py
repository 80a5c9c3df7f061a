"""App speed on the Orion sample: time to the first painted checklist, and preview re-render latency.

    /work/venv/bin/python bench/tui_latency.py

Targets (issue 2): first checklist under 1 s; preview re-render under 50 ms per communique.
Runs headless (Textual's test driver at 80x24) on a private copy of the sample.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="relcomm-bench-"))
    os.environ["RELCOMM_CONFIG_DIR"] = str(work / "config")
    os.environ.setdefault("RELCOMM_CHAT_WEBHOOK", "http://127.0.0.1:9/hook")
    shutil.copytree(ROOT / "sample_plans" / "orion", work / "orion")
    plan = work / "orion" / "plan.toml"

    started = time.perf_counter()
    from relcomm_tui.tui.app import build_app  # importing Textual is part of what the user waits for
    from relcomm_tui.tui.screens.checklist import ChecklistScreen
    from relcomm_tui.tui.screens.preview import PreviewScreen

    app = build_app(plan)
    async with app.run_test(size=(80, 24)) as pilot:
        while not isinstance(app.screen, ChecklistScreen) or not app.screen.query("#groups").first().row_count:
            await pilot.pause(0.001)
        painted = time.perf_counter() - started
        await app.workers.wait_for_complete()
        await pilot.pause()
        checked = time.perf_counter() - started
        print(f"first checklist painted: {painted * 1000:.0f} ms (target < 1000 ms)")
        print(f"checks done (incl. gate): {checked * 1000:.0f} ms")

        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PreviewScreen)
        for communique in app.plan.communiques:
            screen.select_communique(communique.id)
            while screen.rendered is None or screen.rendered.communique_id != communique.id:
                await pilot.pause()
            samples = []
            for _ in range(10):
                # What a saved template costs: render in the worker, then update the widgets on screen.
                before = screen.rendered
                t0 = time.perf_counter()
                screen.rerender()
                while screen.rendered is before and screen.render_error is None:
                    await asyncio.sleep(0)
                samples.append(time.perf_counter() - t0)
            print(f"preview re-render {communique.id:<24} median {statistics.median(samples) * 1000:6.1f} ms"
                  f"  max {max(samples) * 1000:6.1f} ms (target < 50 ms)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
