#!/usr/bin/env python3
"""Speed of building email messages: compose.render + SMTP serialisation for the large sample plan.

This is the per-message cost the send engine pays. Run:

    /work/venv/bin/python bench/render_email.py [--count 3000]
"""

from __future__ import annotations

import argparse
import email.policy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relcomm_tui.compose import render  # noqa: E402
from relcomm_tui.plan import load_plan  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "large"
        shutil.copytree(ROOT / "sample_plans" / "large", folder, ignore=shutil.ignore_patterns("stakeholders", ".relcomm"))
        subprocess.run([sys.executable, str(folder / "make_members.py"), str(folder)], check=True, stdout=subprocess.DEVNULL)
        plan = load_plan(folder / "plan.toml")
        communique = plan.communique("customer-announcement")
        audience = plan.audience(communique)[: args.count]
        start = time.perf_counter()
        size = 0
        for group, recipient in audience:
            size += len(render(plan, communique, group, recipient).message.as_bytes(policy=email.policy.SMTP))
        seconds = time.perf_counter() - start
    print(f"{len(audience)} messages rendered and serialised in {seconds:.2f} s: "
          f"{len(audience) / seconds:.0f} messages/s, {seconds / len(audience) * 1000:.2f} ms each, "
          f"{size / len(audience) / 1024:.1f} KiB average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
