"""What watching the plan's files costs a send (issue 10, item 4; target: negligible at 10,000 recipients).

    .venv/bin/python bench/file_watch.py [--recipients 10000]

The engine makes a quick check (lstat of every file the plan uses) before each message and a full
one (every file read again through the containment check and hashed) at the start of each
communique and every 2 s. Prints the time of both for a plan whose members list has that many
people, and what the quick checks add to a whole send.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from relcomm_tui.plan import load_plan  # noqa: E402
from relcomm_tui.plan.files import FileWatch  # noqa: E402
from send_helpers import write_plan  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        plan_file = write_plan(Path(folder), 2525, recipients=args.recipients)
        text = plan_file.read_text(encoding="utf-8").replace('body = "Hello {{ recipient.name }}"',
                                                            'template = "t.md.j2"', 1)
        plan_file.write_text(text, encoding="utf-8")
        (Path(folder) / "t.md.j2").write_text("Hello {{ recipient.name }}\n", encoding="utf-8")
        plan = load_plan(plan_file)
        watch = FileWatch(plan)
        started = time.perf_counter()
        for _ in range(args.recipients):
            assert watch.quick() is None
        quick = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(20):
            assert watch.full() is None
        full = (time.perf_counter() - started) / 20
        size = sum(len(s.text or "") for s in plan.files)
        print(f"{len(plan.files)} files, {size / 1024:.0f} KiB")
        print(f"quick check: {quick / args.recipients * 1e6:.1f} us each; {quick:.3f} s for {args.recipients:,} messages")
        print(f"full check: {full * 1000:.2f} ms each (every 2 s and per communique)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
