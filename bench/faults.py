"""Run the whole hardening campaign (issue 6) at full size and print its table.

    python bench/faults.py            # full size: 1,000-recipient kills x 20, 100,000-recipient soak, ...
    python bench/faults.py --ci-size  # the sizes CI runs (what `pytest` does anyway)
    python bench/faults.py -k smtp    # only part of it (passed on to pytest)

Every campaign test records what it tried and what held (tests/campaign.py); this script runs
them (`pytest -m campaign`), gathers those records and prints one table: faults injected and
survived, bad inputs tried and handled, secret routes checked, and the three figures that must
be 0 - duplicates, losses, secret leaks. Exit status 1 when any of those is not 0, anything did
not hold, or a test failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import campaign  # noqa: E402  (tests/campaign.py: the record format and the table)

# The campaign at the size the issue names; CI runs smaller defaults (see each test's scale()).
FULL_SIZE = {
    "KILL_RECIPIENTS": 1000,     # CI runs these two at full size too
    "KILL_POINTS": 20,
    "SOAK_RECIPIENTS": 100_000,  # CI: 3,000
    "SMTP_FAULT_RECIPIENTS": 100,  # CI: 6 per fault case
    "STORAGE_RECIPIENTS": 1000,  # CI: 300
    "PLAN_EXAMPLES": 2000,       # CI: 150 hypothesis examples
    "INBOUND_EXAMPLES": 1000,    # CI: 120 per mutation kind
    "LOCK_PAIRS": 20,            # two `relcomm send` at once; CI runs it at full size
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci-size", action="store_true", help="run at the sizes CI uses")
    args, pytest_args = parser.parse_known_args()

    env = dict(os.environ)
    if not args.ci_size:
        for name, value in FULL_SIZE.items():
            env.setdefault(f"RELCOMM_CAMPAIGN_{name}", str(value))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "campaign.jsonl"
        env["RELCOMM_CAMPAIGN_OUT"] = str(out)
        command = [sys.executable, "-m", "pytest", "-q", "-m", "campaign", "-p", "no:cacheprovider",
                   "-o", "timeout=0", *pytest_args]
        print("+", " ".join(command), "  (sizes: " + ("CI" if args.ci_size else
              ", ".join(f"{k.lower()}={env[f'RELCOMM_CAMPAIGN_{k}']}" for k in FULL_SIZE)) + ")", flush=True)
        started = time.monotonic()
        tests = subprocess.run(command, cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        tallies = campaign.read(out)

    print()
    print(campaign.table(tallies) if tallies else "no campaign figures were recorded")
    bad = {k: sum(getattr(t, k) for t in tallies) for k in ("duplicates", "losses", "leaks")}
    not_held = sum(t.tried - t.held for t in tallies)
    print()
    for kind, label in (("fault", "faults injected / survived"), ("input", "bad inputs tried / handled"),
                        ("secret", "secret places checked / clean")):
        mine = [t for t in tallies if t.kind == kind]
        print(f"{label:<32} {sum(t.tried for t in mine):>9,} / {sum(t.held for t in mine):,}")
    for key, label in (("duplicates", "duplicates"), ("losses", "losses"), ("leaks", "secret leaks")):
        print(f"{label:<32} {bad[key]:>9,}")
    print(f"{'pytest':<32} {'passed' if tests.returncode == 0 else 'FAILED'} in {elapsed:.0f} s")
    return 0 if tests.returncode == 0 and not any(bad.values()) and not_held == 0 and tallies else 1


if __name__ == "__main__":
    sys.exit(main())
