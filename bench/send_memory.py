"""Peak memory of a 100,000-recipient send to a local server (target: under 300 MB).

    /work/venv/bin/python bench/send_memory.py [--recipients 100000] [--concurrency 8]

The server runs in its own process (its memory is not ours); this process loads the plan,
renders every message with the compose layer and records every state change in a real
ledger. Prints the peak resident memory of this process (ru_maxrss), after loading the plan
and at the end, and the send rate.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from relcomm_tui.delivery.engine import SendEngine  # noqa: E402
from relcomm_tui.store.ledger import Ledger  # noqa: E402
from send_helpers import load, write_plan  # noqa: E402

SERVER = """
import sys, threading, time
sys.path[:0] = [{root!r}]
from relcomm_tui.demo.mailserver import LoopbackMailServer
server = LoopbackMailServer().start()
total = 0
lock = threading.Lock()

def drain():
    # Forget what was accepted now and then: the sink must not be the thing that runs out of memory.
    global total
    while True:
        time.sleep(1)
        with lock:
            total += server.messages_accepted
            server.clear()

threading.Thread(target=drain, daemon=True).start()
print(server.port, flush=True)
sys.stdin.read()
with lock:
    print(total + server.messages_accepted, flush=True)
"""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def send(plan_file: Path) -> tuple[float, dict]:
    plan = load(plan_file)
    loaded = peak_mb()
    ledger = Ledger.open(plan.state_dir)
    sender = SendEngine(plan, ledger)
    started = time.perf_counter()
    summary = await sender.run()
    elapsed = time.perf_counter() - started
    ledger.close()
    return loaded, {"elapsed": elapsed, "counts": summary.counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    relay = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT))], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    port = int(relay.stdout.readline())
    before = peak_mb()
    with tempfile.TemporaryDirectory() as folder:
        plan_file = write_plan(Path(folder) / "plan", port, recipients=args.recipients, concurrency=args.concurrency,
                               timeout=60)
        try:
            loaded, result = asyncio.run(send(plan_file))
        finally:
            accepted, _ = relay.communicate("", timeout=60)
        ledger_size = sum(p.stat().st_size for p in (Path(folder) / "plan" / ".relcomm").glob("ledger.sqlite*"))
    counts = result["counts"]
    print(f"recipients: {args.recipients}, accepted: {counts['accepted']} (server counted {accepted.strip()})")
    print(f"time: {result['elapsed']:.1f} s, {args.recipients / result['elapsed']:.0f} msgs/s")
    print(f"peak RSS: {before:.0f} MB at start, {loaded:.0f} MB with the plan loaded, "
          f"{peak_mb():.0f} MB at the end (target < 300 MB)")
    print(f"ledger on disk: {ledger_size / 1e6:.1f} MB")


if __name__ == "__main__":
    from relcomm_tui.store.ledger import LedgerError

    try:
        main()
    except LedgerError as error:  # e.g. the ledger key in the settings folder is not usable
        sys.exit(f"cannot use the ledger: {error.message}\n  hint: {error.hint}")
