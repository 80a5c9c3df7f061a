"""`relcomm status PLAN [--json]`: every delivery of the plan's release, its send state and its fate.

The rows are `app.board`'s, the send screen's: every delivery the send covers (those not recorded
yet are "not sent yet"), then the ledger's others (follow-ups, people since removed), counted as
every view counts them.

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

from . import load_plan_or_explain, open_ledger_or_explain, state_dir
from .checkpoint import step_lines
from .receipts import short_time
from .table import fit, lines, terminal_width
from ..script.clock import utc_now
from ..store.ledger import LEDGER_NAME, STATE_LABELS, STATES, LedgerError
from ..store.lock import lock_holder
from ..common.terminal_text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    parser.add_argument("--only", metavar="ID", action="append", default=[], help="only this communique (repeatable)")


def run(args: argparse.Namespace) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..app.board import board
    from ..delivery.engine import SendError

    plan = load_plan_or_explain(args.plan, "relcomm status", as_json=args.json)
    if plan is None:
        return 2
    folder = state_dir(plan, args.state)
    version = plan.release.version
    ledger = None
    # A state folder that is a link is opened, so that it is refused (and said so), never followed.
    if (folder / LEDGER_NAME).exists() or folder.is_symlink():
        ledger = open_ledger_or_explain(folder, "relcomm status", json_for=plan if args.json else None)
        if ledger is None:
            return 2
    from ..invitations import store as invitation_store  # heavy: loaded only when needed (start-up time, see commands/__init__)

    invitations: dict = {}
    try:
        # The same rows as the send screen (app.board): deliveries not recorded yet are "not sent yet".
        where = board(plan, ledger, args.only or None)
        script = _script(plan, ledger)  # where the plan's script stands (issue 14), None without steps
        if ledger is not None:
            invitations = invitation_store.released(ledger, version)  # calendar invitations' sequences
    except SendError as error:
        print(f"relcomm status: {visible(error.message)}\n  hint: {visible(error.hint)}", file=sys.stderr)
        return 2
    finally:
        if ledger is not None:
            ledger.close()
    counts = {state: 0 for state in STATES}
    counts.update(where.counts())
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
            "total": where.total,
            "summary": where.summary() if where.started else None,
            "deliveries": [row.as_dict() for row in where.rows],
            "invitations": {cid: invitation_store.as_json(known) for cid, known in invitations.items()},
            "runs": [{"id": r.id, "started": r.started, "finished": r.finished, "who": r.who, "host": r.host,
                      "mode": r.mode, "outcome": r.outcome} for r in where.runs],
            "script": ({"summary": script[0].summary, "steps": [v.as_dict(script[1]) for v in script[0].steps]}
                       if script else None),
        }, sys.stdout, indent=2)
        print()
        return 0
    # Names, replies and paths come from the plan and from servers: every one through `visible`.
    release = visible(f"{plan.release.name} {version}")
    if script:
        print(visible(f"{release}: {script[0].summary}"))
        for line in step_lines(*script):
            print(visible(line))
    if not where.recorded:
        print(f"{release}: nothing sent yet (no deliveries in {visible(folder / LEDGER_NAME)}); "
              f"{where.total} planned over {len(where.send_ids)} communiques")
        return 0
    if holder:
        print(f"note: {visible(holder.describe())}")
    # A calendar invitation's line under its communique: which sequence it is at (invitations.store).
    notes = {ident: invitation_store.summary(known) for ident, known in invitations.items()}
    for line in table_lines(where.rows, headings=notes):
        print(line)
    summary = ", ".join(f"{n} {STATE_LABELS[s]}" for s, n in counts.items() if n)
    print(f"\n{release}: {where.total} deliveries: {summary}")
    print(visible(where.summary()))
    return 0


HEADERS = ("recipient", "state", "tries", "updated", "fate", "since", "server's reply")


def table_lines(rows, *, limit: int | None | bool = True, headings: dict[str, str] | None = None) -> list[str]:
    """One block per communique of the board's rows, every column aligned (widths from every row,
    so the blocks line up too), fitted to the terminal's width when printing to one. A fate with
    more to say than its label (a bounce's reason, a delay) gets its own line below, never a
    ragged column."""
    width = terminal_width() if limit is True else (limit or None)
    cells, details = [], []
    for row in rows:
        record, fate = row.record, row.fate if row.record is not None else None
        cells.append(tuple(visible(cell) for cell in (
            row.recipient, row.state_label if record else "not sent yet", str(row.attempts),
            short_time(record.updated) if record else "", fate.outcome if fate is not None else "",
            short_time(fate.since) if fate is not None else "", " ".join((row.reply or "").split()))))
        notes = []
        if fate is not None and (fate.reason or fate.unverified):
            notes.append(f"fate: {visible(fate.describe())}")
        if record is not None and record.person_key:  # a resend at a corrected address (relcomm send --resend-to)
            notes.append(f"corrects: {visible(record.person_key)}")
        details.append(notes)
    # Too narrow (80 columns): leave out since, tries, updated, then the reply, before cutting names.
    widths = fit([HEADERS, *cells], limit=width, indent=2, shrink=0, min_shrink=32, drop=(5, 2, 3, 6))
    out: list[str] = []
    current = None
    for board_row, row, detail in zip(rows, cells, details):
        if board_row.communique_id != current:
            current = board_row.communique_id
            out += ["", visible(current)]
            if headings and current in headings:  # e.g. where a calendar invitation stands
                out.append("  " + visible(headings[current]))
            out += lines([HEADERS], widths, indent=2)
        out += lines([row], widths, indent=2)
        for note in detail:
            out += lines([(note,)], [width - 4 if width else len(note)], indent=4)
    return out


def _script(plan, ledger):
    """(where the plan's script stands, now), or None for a plan without steps (issue 14)."""
    if not plan.steps:
        return None
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..script.progress import expected_deliveries, gather_facts, load_events
    from ..script.scheduler import CommuniqueFacts, evaluate

    now = utc_now()
    if ledger is None:  # nothing sent yet: every step as the script starts
        facts = {c: CommuniqueFacts(plan.communique(c).channel, n) for c, n in expected_deliveries(plan).items()}
        return evaluate(plan.steps, facts, [], now), now
    return evaluate(plan.steps, gather_facts(plan, ledger), load_events(plan, ledger), now), now
