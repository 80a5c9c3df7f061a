"""`relcomm receipts PLAN [--refresh] [--json] [--watch]`: who received each communique;
`relcomm receipts parse FILE... [--json]`: how relcomm understands inbound reports.

The table and summaries are the same view model the app shows (receipts.status), so the
headless answer and the screen never disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from . import add_allow_commands
from ..terminal_text import visible

PROG = "relcomm receipts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s PLAN [--refresh] [--json] [--watch] [--state DIR]\n       %(prog)s parse FILE... [--json]"
    parser.add_argument("target", nargs="+", metavar="PLAN | parse FILE...",
                        help="the plan (a .toml file or a folder holding plan.toml), or `parse` and report files")
    parser.add_argument("--refresh", action="store_true", help="read the plan's receipt sources first")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", action="store_true",
                        help="refresh every [receipts] refresh seconds and print what changed, until Ctrl-C")
    parser.add_argument("--every", metavar="SECONDS", type=float,
                        help="with --watch: seconds between refreshes (default: the plan's [receipts] refresh)")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    add_allow_commands(parser)


def run(args: argparse.Namespace) -> int:
    # Callers building a Namespace by hand (the demo) may name the plan `plan` and files `files`.
    target = list(getattr(args, "target", None) or [])
    if not target and getattr(args, "files", None):
        target = ["parse", *args.files]
    elif not target and getattr(args, "plan", None):
        target = [str(args.plan)]
    if not target:
        print(f"{PROG}: give a plan (or `parse FILE...`)", file=sys.stderr)
        return 2
    args.target = target
    for name, default in (("json", False), ("refresh", False), ("watch", False), ("state", None), ("every", None),
                          ("allow_commands", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if target[0] == "parse" and len(target) > 1:
        return run_parse(target[1:], as_json=args.json)
    if len(target) > 1:
        print(f"{PROG}: give one plan (or `parse FILE...`)", file=sys.stderr)
        return 2
    return run_status(args)


# -- parse ------------------------------------------------------------------------------------


def run_parse(files: list[str], *, as_json: bool) -> int:
    from ..receipts.parse import MAX_RAW_BYTES, parse_message, report_to_json

    results = []
    failed = 0
    for name in files:
        try:
            with open(name, "rb") as file:
                raw = file.read(MAX_RAW_BYTES + 1)  # only the head of a huge file is parsed anyway
        except OSError as error:
            print(f"{PROG} parse: cannot read {visible(name)}: {error.strerror}", file=sys.stderr)
            failed += 1
            continue
        results.append((name, parse_message(raw)))
    if as_json:
        json.dump([report_to_json(name, report) for name, report in results], sys.stdout, indent=2)
        print()
    else:
        for name, report in results:  # every field comes from a stranger's mail
            print(visible(f"{name}: {report.kind}" + (f" ({report.problem})" if report.problem else "")))
            for r in report.recipients:
                print("  " + visible(f"{r.address or '(no address)'}  {r.action or '-'}  {r.status or '-'}"
                                     + (f"  {r.diagnostic}" if r.diagnostic else "")))
            if report.original_message_id:
                print(f"  original Message-ID: <{visible(report.original_message_id)}>")
            if report.envelope_id:
                print(f"  envelope id: {visible(report.envelope_id)}")
    return 1 if failed else 0


# -- status -----------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    from . import load_plan_or_explain, open_ledger_or_explain, state_dir
    from ..receipts.refresh import refresh
    from ..receipts.status import build_status

    plan = load_plan_or_explain(args.target[0], PROG, allow_commands=args.allow_commands, as_json=args.json)
    if plan is None:
        return 2
    ledger = open_ledger_or_explain(state_dir(plan, args.state), PROG, json_for=plan if args.json else None)
    if ledger is None:
        return 2
    try:
        result = None
        if args.refresh or args.watch:
            result = refresh(plan, ledger)
            for problem in result.problems:
                hint = f"\n  hint: {visible(problem.hint)}" if problem.hint else ""
                print(f"{PROG}: {visible(problem.message)}{hint}", file=sys.stderr)
        status = build_status(plan, ledger)
        if args.json:
            data = {"release": {"name": plan.release.name, "version": plan.release.version}, **status.as_dict()}
            if result is not None:
                data["refresh"] = refresh_dict(result)
            json.dump(data, sys.stdout, indent=2)
            print()
        else:
            print(render_text(plan, status, result))
        if not args.watch:
            return 1 if result is not None and result.problems else 0
        return watch(plan, ledger, status, as_json=args.json, every=args.every or plan.receipts.refresh)
    finally:
        ledger.close()


def watch(plan, ledger, status, *, as_json: bool, every: float) -> int:
    from ..receipts.refresh import refresh
    from ..receipts.status import build_status

    before = {row.delivery_id: row.as_dict() for row in status.rows}
    try:
        while True:
            time.sleep(every)
            result = refresh(plan, ledger)
            status = build_status(plan, ledger)
            for row in status.rows:
                now = row.as_dict()
                if before.get(row.delivery_id) != now:
                    before[row.delivery_id] = now
                    if as_json:
                        print(json.dumps(now), flush=True)
                    else:
                        print(f"{_clock()}  " + visible(f"{row.communique_id}  {row.recipient}: {describe(row)}"),
                              flush=True)
            for problem in result.problems:
                print(f"{PROG}: {visible(problem.message)}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("stopped watching", file=sys.stderr)
        return 0


def _clock() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def refresh_dict(result) -> dict:
    return {"read": result.read, "reports": result.reports, "new_receipts": result.new_receipts,
            "matched": result.matched, "unmatched": result.unmatched, "ignored": result.ignored,
            "problems": [{"source": p.source, "message": p.message, "hint": p.hint} for p in result.problems]}


def short_time(stamp: str | None) -> str:
    """Ledger UTC text as local "MM-DD HH:MM"; empty for none."""
    if not stamp:
        return ""
    try:
        return dt.datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp[:16]


def describe(row) -> str:
    """One phrase for a recipient's standing, as the table's last column."""
    parts = [row.standing]
    if row.bounced and row.standing == "bounced":
        parts.append(f"({row.reason})" if row.reason else "")
    if row.complained:
        parts.append("complained" + (f" ({row.reason})" if row.reason and row.standing != "bounced" else ""))
    if row.auto_replied:
        parts.append("auto-replied")
    return " ".join(p for p in parts if p)


def render_text(plan, status, result=None) -> str:
    lines = [visible(f"{plan.release.name} {plan.release.version}") + ": receipts"]
    if result is not None:
        lines.append(f"refreshed: {result.read} new message(s) read, {result.new_receipts} new receipt(s)")
    if not status.rows:
        lines.append("nothing sent yet")
        return "\n".join(lines)
    headers = ("communique", "group", "recipient", "sent", "delivered", "displayed", "acknowledged", "outcome")
    table = [headers]
    for row in status.rows:
        table.append(tuple(visible(cell) for cell in (
            row.communique_id, row.group_id, row.recipient, short_time(row.sent), short_time(row.delivered),
            short_time(row.displayed), short_time(row.acknowledged), describe(row))))
    widths = [max(len(r[i]) for r in table) for i in range(len(headers) - 1)]
    lines.append("")
    for r in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    for title, coverages in (("by stakeholder group", status.by_group), ("by communique", status.by_communique)):
        lines.append("")
        lines.append(title)
        for c in coverages:
            lines.append("  " + coverage_line(c))
    lines.append("")
    lines.append("overall  " + coverage_line(status.overall))
    if status.unmatched:
        lines.append(f"{status.unmatched} report(s) matched no delivery")
    return "\n".join(lines)


def coverage_line(c) -> str:
    return (f"{visible(c.id)}: {c.total} · reached {c.reached} ({c.percent(c.reached):.0f}%) · "
            f"confirmed {c.confirmed} "
            f"({c.percent(c.confirmed):.0f}%) · bounced {c.bounced} ({c.percent(c.bounced):.0f}%) · unknown "
            f"{c.unknown} ({c.percent(c.unknown):.0f}%)")
