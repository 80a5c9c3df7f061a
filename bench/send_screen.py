"""How the send screen copes with a big send: N recipients through the real app, engine and ledger
to a loopback SMTP server, with the table updated in place from coalesced events.

Prints: time to open the screen with N rows, the send's wall time and messages/s through the app,
the longest stall of the event loop while sending (how late a 50 ms heartbeat ran: what a keypress
would wait), and the mean and worst time of one coalesced table update.

    /work/venv/bin/python bench/send_screen.py --recipients 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from relcomm_tui.demo.mailserver import LoopbackMailServer  # noqa: E402
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
    import relcomm_tui.channels.email as email_channel

    email_channel.default_render = lambda plan: simple_render  # the bench measures the screen, not compose
    with LoopbackMailServer(maildir=None) as server:
        plan_path = write_plan(folder / "plan", server.port, recipients, concurrency=concurrency)
        app = RelcommApp(load_plan(plan_path), state_dir=folder / "state")
        async with app.run_test(size=(80, 24)) as pilot:
            await app.workers.wait_for_complete()
            start = time.perf_counter()
            screen = SendScreen(only=["news"], show_rate=False)
            await app.push_screen(screen)
            await pilot.pause()
            opened = time.perf_counter() - start
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
            screen.begin_run()
            await pilot.pause()
            await app.workers.wait_for_complete([w for w in app.workers if w.group == "send"])
            await pilot.pause()
            took = time.perf_counter() - start
            if all_accepted:
                print(f"all accepted after {all_accepted[0] - start:.1f} s")
            ticker.cancel()
            accepted = screen.counts["accepted"]
    print(f"recipients            {recipients}")
    print(f"screen opened in      {opened * 1000:.0f} ms ({len(screen.rows)} rows)")
    print(f"send through the app  {took:.1f} s, {accepted / took:.0f} msg/s, {accepted} accepted, "
          f"{server.messages_accepted} at the server")
    print(f"worst event-loop stall {worst_lag * 1000:.0f} ms (a keypress waits at most this long)")
    if flushes:
        print(f"table update (flush)  mean {sum(flushes) / len(flushes) * 1000:.1f} ms, "
              f"worst {max(flushes) * 1000:.1f} ms over {len(flushes)} flushes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.recipients, args.concurrency))


if __name__ == "__main__":
    main()
