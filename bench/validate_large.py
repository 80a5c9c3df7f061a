#!/usr/bin/env python3
"""Speed of `relcomm validate` on the 10,540-recipient sample plan: wall time and peak memory.

Targets: under 3 s and under 250 MB on a 2-core machine. Run:

    /work/venv/bin/python bench/validate_large.py [--runs 3]

The plan's members files are generated into a temporary copy (sample_plans/large/make_members.py).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LARGE = ROOT / "sample_plans" / "large"
TARGET_SECONDS, TARGET_MB = 3.0, 250


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "large"
        shutil.copytree(LARGE, folder, ignore=shutil.ignore_patterns("stakeholders", ".relcomm"))
        subprocess.run([sys.executable, str(folder / "make_members.py"), str(folder)], check=True,
                       stdout=subprocess.DEVNULL)
        command = [sys.executable, "-m", "relcomm_tui.commands.main", "validate", str(folder / "plan.toml")]
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                print(done.stdout, done.stderr, sep="\n")
                print(f"relcomm validate exited {done.returncode}")
                return 1
        # ru_maxrss is the largest of the children so far, in KiB on Linux.
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = done.stdout.strip().splitlines()[-1]
    best, worst = min(times), max(times)
    print(f"validate large plan: {summary}")
    print(f"wall time: best {best:.2f} s, worst {worst:.2f} s over {args.runs} runs (target < {TARGET_SECONDS:g} s)")
    print(f"peak RSS: {peak_mb:.0f} MB (target < {TARGET_MB} MB)")
    ok = best < TARGET_SECONDS and peak_mb < TARGET_MB
    print("OK" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
