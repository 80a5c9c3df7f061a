#!/usr/bin/env python3
"""Cost of looking at the script (issue 14) on the 10,540-recipient sample: what the runner pays
every second while it waits, what `relcomm status` pays once, and the pure scheduler alone.

    python bench/script_poll.py [--runs 20]

The large plan is copied to a temporary folder with its members generated and a script appended
(customers after partners, a halt over 5% that reads the reports); every delivery is in the ledger.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = """
[[steps]]
id = "heads-up"
send = ["eng-chat", "support-briefing", "exec-briefing"]

[[steps]]
id = "partners"
send = ["partner-briefing"]
wait = "30m"

[[steps]]
id = "customers"
send = ["customer-announcement", "release-page"]
not_before = "17:00 UTC"
halt_if = { failed_over = 5 }
"""


def timed(work, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000, max(samples) * 1000


def main() -> int:
    from relcomm_tui.delivery.engine import delivery_audience, sender_domain
    from relcomm_tui.plan import load_plan
    from relcomm_tui.script.progress import FactsCache, expected_deliveries, gather_facts, load_events, script_state
    from relcomm_tui.script.scheduler import evaluate
    from relcomm_tui.store.ledger import DeliveryIntent, Ledger

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "large"
        shutil.copytree(ROOT / "sample_plans" / "large", folder, ignore=shutil.ignore_patterns(".relcomm"))
        subprocess.run([sys.executable, str(folder / "make_members.py")], check=True, capture_output=True)
        with open(folder / "plan.toml", "a", encoding="utf-8") as plan_file:
            plan_file.write(STEPS)
        plan = load_plan(folder / "plan.toml")
        ledger = Ledger.open(plan.state_dir)
        for communique in plan.communiques:
            ledger.ensure_deliveries(plan.release.version, (
                DeliveryIntent(communique.id, r.key, r.display, g.id, communique.channel)
                for g, r in delivery_audience(plan, communique)), domain=sender_domain(plan))
        ledger.apply([lambda db: db.execute("UPDATE deliveries SET state='accepted', sent_at=created")])
        deliveries = sum(ledger.counts(plan.release.version).values())
        expected = expected_deliveries(plan)
        now = dt.datetime.now(dt.timezone.utc)
        facts = gather_facts(plan, ledger, expected)
        events = load_events(plan, ledger)
        cache = FactsCache()
        first = timed(lambda: script_state(plan, ledger, now, expected=expected, cache=cache), 1)
        poll = timed(lambda: script_state(plan, ledger, now, expected=expected, cache=cache), args.runs)
        status = timed(lambda: script_state(plan, ledger, now), max(3, args.runs // 5))
        pure = timed(lambda: evaluate(plan.steps, facts, events, now), args.runs * 10)
        ledger.close()
    print(f"large plan: {deliveries} deliveries in the ledger, {len(plan.steps)} steps, fates read (halt_if failed_over)")
    print(f"runner, first look (facts, fates):        {first[0]:7.1f} ms")
    print(f"runner poll, nothing changed (cached):     median {poll[0]:7.1f} ms  max {poll[1]:7.1f} ms")
    print(f"status, one look (audiences, fates):       median {status[0]:7.1f} ms  max {status[1]:7.1f} ms")
    print(f"scheduler alone (pure):                    median {pure[0]:7.3f} ms  max {pure[1]:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
