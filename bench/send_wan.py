"""Send throughput to a relay 20 ms away: the engine vs one SMTP connection per message.

    /work/venv/bin/python bench/send_wan.py [--recipients 1000] [--baseline 40] [--concurrency 8]

Both go through a loopback proxy that adds 10 ms each way to every chunk, to the embedded
loopback server (which advertises PIPELINING and DSN, as Postfix does). The baseline is how
simple mail-merge tools send: `aiosmtplib.send` per message, one after the other, a new
connection each time. The engine renders every message with the compose layer and commits
every state change to a real ledger file (WAL, synchronous=FULL). Target: ratio >= 15.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import aiosmtplib  # noqa: E402

from relcomm_tui.delivery.engine import SendEngine  # noqa: E402
from relcomm_tui.store.ledger import Ledger  # noqa: E402
from send_helpers import load, write_plan  # noqa: E402


async def baseline(port: int, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        message = EmailMessage()
        message["From"] = "release@orion.example.com"
        message["To"] = f"base{i}@example.com"
        message["Subject"] = "Orion 4.2.0 is out"
        message.set_content(f"Hello base {i}")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
    return count / (time.perf_counter() - started)


async def engine(port: int, count: int, concurrency: int, folder: Path) -> tuple[float, dict]:
    plan = load(write_plan(folder, port, recipients=count, concurrency=concurrency, timeout=30))
    ledger = Ledger.open(plan.state_dir)
    sender = SendEngine(plan, ledger)
    started = time.perf_counter()
    summary = await sender.run()
    elapsed = time.perf_counter() - started
    assert summary.counts["accepted"] == count, summary.counts
    stats = dict(sender.channel_stats["email"])
    stats["commits"] = sender._committer.commits
    ledger.close()
    return count / elapsed, stats


RELAY = """
import sys, threading
sys.path[:0] = [{root!r}, {bench!r}]
from latency_proxy import LatencyProxy
from relcomm_tui.demo.mailserver import LoopbackMailServer
server = LoopbackMailServer().start()
proxy = LatencyProxy(server.port, {delay}).start()
print(proxy.port, flush=True)
sys.stdin.read()
print(server.messages_accepted, flush=True)
"""


def start_relay(delay: float) -> tuple[subprocess.Popen, int]:
    """The server and the proxy in their own process: the relay is another machine, and must
    not share this process's interpreter lock with the sender being measured."""
    code = RELAY.format(root=str(ROOT), bench=str(ROOT / "bench"), delay=delay)
    relay = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return relay, int(relay.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=40, help="messages for the (slow) baseline")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="added latency each way")
    args = parser.parse_args()
    relay, port = start_relay(args.delay_ms / 1000)
    with tempfile.TemporaryDirectory() as folder:
        try:
            base_rate = asyncio.run(baseline(port, args.baseline))
            engine_rate, stats = asyncio.run(engine(port, args.recipients, args.concurrency, Path(folder) / "plan"))
        finally:
            delivered, _ = relay.communicate("", timeout=30)
    print(f"latency: {args.delay_ms:g} ms each way ({2 * args.delay_ms:g} ms round trip)")
    print(f"baseline (one aiosmtplib connection per message, sequential): {args.baseline} msgs, {base_rate:.1f} msgs/s")
    print(f"relcomm engine (concurrency {args.concurrency}, pipelining, ledger WAL+FULL): "
          f"{args.recipients} msgs, {engine_rate:.1f} msgs/s")
    print(f"  round trips: {stats['round_trips']} ({stats['round_trips'] / args.recipients:.2f} per message incl. EHLO), "
          f"ledger commits: {stats['commits']} for {2 * args.recipients} state changes")
    print(f"ratio: {engine_rate / base_rate:.1f}x (target >= 15x)")
    print(f"server accepted {delivered.strip()} messages in all")


if __name__ == "__main__":
    from relcomm_tui.store.ledger import LedgerError

    try:
        main()
    except LedgerError as error:  # e.g. the ledger key in the settings folder is not usable
        sys.exit(f"cannot use the ledger: {error.message}\n  hint: {error.hint}")
