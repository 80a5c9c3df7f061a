"""`relcomm status PLAN [--json]`: every delivery of the plan's release, its send state and its fate.

The state is what the send did (accepted by the server, refused, in doubt); the fate is what
became of the message, from the reports already read (receipts.status.fate_of: the one function
every view asks, so `status`, `receipts`, `report` and the app never disagree). A bounced
recipient is "accepted" by the relay and "bounced" in fate. No source is read here: that is
`relcomm receipts --refresh`.

Read-only in spirit: it never creates a ledger, and opening one while another process sends
leaves that sender's `sending` rows alone (only a dead sender's become "in doubt").
"""

from __future__ import annotations

import argparse
import json
import sys

from ..store.ledger import LEDGER_NAME, STATE_LABELS, STATES
from ..common.terminal_text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    parser.add_argument("--only", metavar="ID", action="append", default=[], help="only this communique (repeatable)")


def run(args: argparse.Namespace) -> int:
    from ..store.lock import lock_holder
    from . import load_plan_or_explain, open_ledger_or_explain, state_dir

    plan = load_plan_or_explain(args.plan, "relcomm status", as_json=args.json)
    if plan is None:
        return 2
    folder = state_dir(plan, args.state)
    version = plan.release.version
    records = []
    fates: dict = {}
    # A state folder that is a link is opened, so that it is refused (and said so), never followed.
    if (folder / LEDGER_NAME).exists() or folder.is_symlink():
        from ..receipts.status import build_status, fate_of

        ledger = open_ledger_or_explain(folder, "relcomm status", json_for=plan if args.json else None)
        if ledger is None:
            return 2
        try:
            records = ledger.deliveries(version)
            runs = ledger.runs(version)
            fates = {row.delivery_id: fate_of(row) for row in build_status(plan, ledger).rows}
        finally:
            ledger.close()
    else:
        runs = []
    if args.only:
        records = [r for r in records if r.communique_id in args.only]
    counts = {state: 0 for state in STATES}
    for record in records:
        counts[record.state] += 1
    from ..store.ledger import LedgerError

    try:
        holder = lock_holder(folder)
    except LedgerError as error:  # a state folder or lock that is a link or not the user's
        print(f"relcomm status: {error.message}" + (f"\n  hint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return 2
    if args.json:
        json.dump({
            "release": {"name": plan.release.name, "version": version},
            "ledger": str(folder / LEDGER_NAME),
            "sending_now": holder.describe() if holder else None,
            "counts": counts,
            "deliveries": [r.as_dict() | {"fate": fates[r.id].as_dict() if r.id in fates else None}
                           for r in records],
            "runs": [{"id": r.id, "started": r.started, "finished": r.finished, "who": r.who, "host": r.host,
                      "mode": r.mode, "outcome": r.outcome} for r in runs],
        }, sys.stdout, indent=2)
        print()
        return 0
    # Names, replies and paths come from the plan and from servers: every one through `visible`.
    release = visible(f"{plan.release.name} {version}")
    if not records:
        print(f"{release}: nothing sent yet (no deliveries in {visible(folder / LEDGER_NAME)})")
        return 0
    if holder:
        print(f"note: {visible(holder.describe())}")
    width = max(len(visible(r.recipient_display)) for r in records)
    current = None
    for record in records:
        if record.communique_id != current:
            current = record.communique_id
            print(f"\n{visible(current)}")
        reply = visible(" ".join((record.reply or "").split()))
        fate = fates.get(record.id)
        print(f"  {record.state_label:<16} {visible(record.recipient_display):<{width}}  "
              f"{record.attempts} attempt(s)  {visible(record.updated[:19])}  {reply}".rstrip())
        if fate is not None and fate.outcome != record.state_label:
            print(f"  {'':<16} fate: {visible(fate.describe())}")
    summary = ", ".join(f"{n} {STATE_LABELS[s]}" for s, n in counts.items() if n)
    print(f"\n{release}: {summary}")
    return 0
