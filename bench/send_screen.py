"""How the send screen copes with a big send: N recipients through the real app, engine and ledger
to a loopback SMTP server, with the table updated in place from coalesced events.

In one run, against the same server and the same plan: the engine alone (no app), then the app.
Prints the three figures issue 13 sets targets for, and a verdict on each:
  - time to open the send screen with N rows (first paint) (target < 500 ms at 10,000)
  - messages/s through the app as a share of the engine's  (target >= 90 %)
  - the longest stall of the event loop while sending       (target <= 100 ms; how long a keypress waits)
and the mean and worst time of one coalesced table update.

    .venv/bin/python bench/send_screen.py --recipients 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from relcomm_tui.delivery.engine import SendEngine  # noqa: E402
from relcomm_tui.demo.mailserver import LoopbackMailServer  # noqa: E402
from relcomm_tui.store.ledger import Ledger  # noqa: E402
from relcomm_tui.plan import load_plan  # noqa: E402
from relcomm_tui.tui.app import RelcommApp  # noqa: E402
from relcomm_tui.tui.screens.send import SendScreen  # noqa: E402
from send_helpers import simple_render, write_plan  # noqa: E402


async def run(recipients: int, concurrency: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="relcomm-bench-"))
    os.environ["RELCOMM_CONFIG_DIR"] = str(folder / "config")
    os.environ["RELCOMM_TEST_HOOK"] = "http://127.0.0.1:9/unused"
    flushes: list[float] = []
    all_accepted: list[float] = []
    original_flush = SendScreen.flush

    def timed_flush(self) -> None:
        start = time.perf_counter()
        original_flush(self)
        if self.running:
            flushes.append(time.perf_counter() - start)
            if self.counts["accepted"] == len(self.rows) and not all_accepted:
                all_accepted.append(time.perf_counter())

    SendScreen.flush = timed_flush  # type: ignore[method-assign]
    filled_at: list[float] = []
    from relcomm_tui.tui.widgets.delivery_table import DeliveryTable

    original_fill = DeliveryTable.fill_more

    def timed_fill(self) -> None:
        original_fill(self)
        if not self.to_add and not filled_at:
            filled_at.append(time.perf_counter())

    DeliveryTable.fill_more = timed_fill  # type: ignore[method-assign]
    import relcomm_tui.channels.email as email_channel

    email_channel.default_render = lambda plan: simple_render  # the bench measures the screen, not compose
    with serving() as port:
        plan_path = write_plan(folder / "plan", port, recipients, concurrency=concurrency)
        # The engine alone first, same server, same plan, its own ledger: what the app must keep up with.
        with Ledger.open(folder / "engine-state") as ledger:
            start = time.perf_counter()
            summary = await SendEngine(load_plan(plan_path), ledger, only=["news"]).run()
            engine_took = time.perf_counter() - start
        engine_rate = summary.counts["accepted"] / engine_took
        app = RelcommApp(load_plan(plan_path), state_dir=folder / "state")
        async with app.run_test(size=(80, 24)) as pilot:
            await app.workers.wait_for_complete()
            start = time.perf_counter()
            screen = SendScreen(only=["news"], show_rate=False)
            await app.push_screen(screen)
            painted = asyncio.Event()
            screen.call_after_refresh(painted.set)
            await painted.wait()  # the screen is on the terminal, its first rows drawn, keys answered
            opened = time.perf_counter() - start
            shown_rows, counted_rows = screen.table.row_count, len(screen.rows)
            worst_lag = 0.0
            beat = 0.05

            async def heartbeat() -> None:
                nonlocal worst_lag
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(beat)
                    worst_lag = max(worst_lag, time.perf_counter() - before - beat)

            ticker = asyncio.create_task(heartbeat())
            start = time.perf_counter()
            screen.begin_run()  # at once, as "send" in the confirm dialog does: the table still fills meanwhile
            await pilot.pause()
            await app.workers.wait_for_complete([w for w in app.workers if w.group == "send"])
            await pilot.pause()
            took = time.perf_counter() - start
            filled = filled_at[0] - start if filled_at else None
            if all_accepted:
                print(f"all accepted after {all_accepted[0] - start:.1f} s")
            ticker.cancel()
            accepted = screen.counts["accepted"]
    app_rate = accepted / took
    share = app_rate / engine_rate
    print(f"recipients             {recipients}")
    print(f"screen opened in       {opened * 1000:.0f} ms (first paint: {shown_rows} rows drawn, all {counted_rows} counted)"
          f"   target < 500 ms: {'met' if opened < 0.5 else 'NOT met'}")
    if filled is not None:
        print(f"table filled           {filled:.1f} s after the send began (the rest added in slices between frames)")
    print(f"engine alone           {engine_took:.1f} s, {engine_rate:.0f} msg/s")
    print(f"send through the app   {took:.1f} s, {app_rate:.0f} msg/s = {share * 100:.0f}% of the engine's, "
          f"{accepted} accepted   target >= 90%: {'met' if share >= 0.9 else 'NOT met'}")
    print(f"worst event-loop stall {worst_lag * 1000:.0f} ms (a keypress waits at most this long)"
          f"   target <= 100 ms: {'met' if worst_lag <= 0.1 else 'NOT met'}")
    if flushes:
        print(f"table update (flush)   mean {sum(flushes) / len(flushes) * 1000:.1f} ms, "
              f"worst {max(flushes) * 1000:.1f} ms over {len(flushes)} flushes")


@contextlib.contextmanager
def serving():
    """The loopback SMTP server in a process of its own, as a real relay is: its threads and the
    10,000 messages it keeps cost the measured process neither the GIL nor garbage collections."""
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        yield int(server.stdout.readline())
    finally:
        server.terminate()
        server.wait(10)


def serve() -> None:
    with LoopbackMailServer(maildir=None) as server:
        print(server.port, flush=True)
        threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    asyncio.run(run(args.recipients, args.concurrency))


if __name__ == "__main__":
    main()
