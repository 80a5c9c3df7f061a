"""Time and peak memory of the worst templates (issue 10, item 6; target: each under 5 s and ~100 MB).

    .venv/bin/python bench/render_limits.py [--address-space-mb 0] [LABEL ...]

Each template of tests/template_bombs.py renders in its own process (so one's memory is not
another's): prints how it ended (`limit` is what it must be), the seconds it took and the peak
resident memory of that process, and the interpreter's own baseline for comparison. Before the
fix, the first one took 92 s and 3.5 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from template_bombs import BOMBS  # noqa: E402

BASELINE = "import relcomm_tui.compose.templates, template_bombs; print(template_bombs.peak_mb())"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address-space-mb", type=int, default=0, help="RLIMIT_AS on top of the interpreter (0: none)")
    parser.add_argument("labels", nargs="*", help="only these bombs")
    args = parser.parse_args()
    baseline = float(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True,
                                    cwd=ROOT / "tests", check=True).stdout)
    print(f"interpreter with relcomm's templates loaded: {baseline:.0f} MB")
    print(f"{'template':52} {'ended as':9} {'seconds':>8} {'peak MB':>8}")
    worst_time = worst_memory = 0.0
    for label, _ in BOMBS:
        if args.labels and label not in args.labels:
            continue
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "template_bombs.py"), str(args.address_space_mb),
                               label], capture_output=True, text=True, cwd=ROOT, timeout=900)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(f"{label[:52]:52} died: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
            continue
        result = lines[0]
        worst_time, worst_memory = max(worst_time, result["seconds"]), max(worst_memory, result["peak_mb"])
        print(f"{label[:52]:52} {result['kind']:9} {result['seconds']:8.2f} {result['peak_mb']:8.1f}")
    print(f"worst: {worst_time:.2f} s, {worst_memory:.0f} MB peak ({worst_memory - baseline:.0f} MB over the interpreter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
