#!/usr/bin/env python3
"""Cost of calendar invitations: render time and size of an email with and without one, and the
time to parse a calendar reply (tests/itip fixtures) compared with a plain DSN.

Run:  .venv/bin/python bench/invitation.py [--messages 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    import dataclasses
    import email.policy

    from relcomm_tui.compose.invitation import Stamp

    from relcomm_tui.compose import render
    from relcomm_tui.plan import load_plan
    from relcomm_tui.receipts.parse import parse_message
    from test_invitation_send import write

    people = [f'"Person {i}" <person{i}@vega.example.com>' for i in range(args.messages)]
    with tempfile.TemporaryDirectory() as folder:
        plain_file = write(Path(folder) / "a", 2525, people=people)
        text = plain_file.read_text().split("[communiques.invitation]")[0]
        (Path(folder) / "b").mkdir()
        (Path(folder) / "b" / "plan.toml").write_text(text.replace("{{ invitation.start }}", "soon"))
        for label, path in (("without invitation", Path(folder) / "b" / "plan.toml"), ("with invitation", plain_file)):
            plan = load_plan(path)
            communique = plan.communiques[0]
            if communique.spec.invitation is not None:  # as in a send: the ledger's UID and SEQUENCE
                plan = dataclasses.replace(plan, invitations={communique.id: Stamp("relcomm.0@vega.example.com", 0)})
            audience = plan.audience(communique)
            started = time.perf_counter()
            size = 0
            for group, recipient in audience:
                message = render(plan, communique, group, recipient, message_id="<relcomm.x@vega.example.com>").message
                size += len(message.as_bytes(policy=email.policy.SMTP))
            elapsed = time.perf_counter() - started
            print(f"render {label:<20} {1000 * elapsed / len(audience):6.2f} ms/message   "
                  f"{size / len(audience) / 1024:5.1f} kB/message   ({len(audience)} messages)")
    fixtures = sorted((ROOT / "tests" / "itip").glob("*.eml"))
    dsn = sorted((ROOT / "tests" / "reports").glob("postfix-*.eml"))[:1]
    for label, files in (("calendar reply", fixtures), ("postfix DSN", dsn)):
        raws = [f.read_bytes() for f in files]
        rounds = max(1, 2000 // len(raws))
        started = time.perf_counter()
        for _ in range(rounds):
            for raw in raws:
                parse_message(raw)
        elapsed = time.perf_counter() - started
        print(f"parse  {label:<20} {1000 * elapsed / (rounds * len(raws)):6.2f} ms/message   ({rounds * len(raws)} parses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
