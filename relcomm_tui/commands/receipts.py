"""`relcomm receipts PLAN [--refresh] [--json] [--watch]`: who received each communique;
`relcomm receipts parse FILE... [--json]`: how relcomm understands inbound reports.

`parse` is a subcommand of its own (options before or after the files); any other first word is
the plan. The table and summaries are the same view model the app shows (receipts.status), and
each recipient's fate comes from receipts.status.fate_of, so the headless answer, `relcomm
status`, `relcomm report` and the screen never disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
import time

from . import add_allow_commands
from . import load_plan_or_explain, open_ledger_or_explain, state_dir
from .table import cell_width, fit, terminal_width
from .table import lines as padded
from ..common.terminal_text import visible
from ..common.times import short_time as common_short_time

PROG = "relcomm receipts"
SUBCOMMANDS = ("show", "parse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("%(prog)s PLAN [--refresh] [--json] [--watch] [--state DIR]\n"
                    "       %(prog)s parse [--json] FILE...")
    sub = parser.add_subparsers(dest="receipts_command", metavar="parse")
    show = sub.add_parser("show", help="the plan's receipts (the default: `relcomm receipts PLAN`)",
                          usage="relcomm receipts PLAN [--refresh] [--json] [--watch] [--state DIR]")
    show.add_argument("plan", metavar="PLAN", help="the plan (a .toml file or a folder holding plan.toml)")
    show.add_argument("--refresh", action="store_true", help="read the plan's receipt sources first")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--watch", action="store_true",
                      help="refresh every [receipts] refresh seconds and print what changed, until Ctrl-C")
    show.add_argument("--every", metavar="SECONDS", type=float,
                      help="with --watch: seconds between refreshes (default: the plan's [receipts] refresh)")
    show.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    add_allow_commands(show)
    parse = sub.add_parser("parse", help="how relcomm understands report files (nothing is recorded)",
                           usage="relcomm receipts parse [--json] FILE...")
    parse.add_argument("files", nargs="+", metavar="FILE", help="report files (a message each: .eml)")
    parse.add_argument("--json", action="store_true", help="machine-readable output")


def normalize_argv(argv: list[str]) -> list[str]:
    """`relcomm receipts PLAN ...` is `receipts show PLAN ...`; `parse` may follow options given
    before it (`--json parse FILE`). Called by the CLI before parsing."""
    if not argv or argv[0] in (*SUBCOMMANDS, "-h", "--help"):
        return argv
    for index, word in enumerate(argv):
        if word == "parse":
            return ["parse", *argv[:index], *argv[index + 1:]]
        if not word.startswith("-"):
            break
    return ["show", *argv]


def run(args: argparse.Namespace) -> int:
    # Callers building a Namespace by hand (the demo) may name the plan `plan` and files `files`.
    command = getattr(args, "receipts_command", None)
    if command is None:
        command = "parse" if getattr(args, "files", None) else "show" if getattr(args, "plan", None) else None
    if command is None:
        print(f"{PROG}: give a plan (or `parse FILE...`)", file=sys.stderr)
        return 2
    for name, default in (("json", False), ("refresh", False), ("watch", False), ("state", None), ("every", None),
                          ("allow_commands", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if command == "parse":
        return run_parse(list(args.files), as_json=args.json)
    return run_status(args)


# -- parse ------------------------------------------------------------------------------------


def run_parse(files: list[str], *, as_json: bool) -> int:
    from ..receipts.parse import MAX_RAW_BYTES, parse_message, report_to_json  # heavy: loaded only when needed (start-up time, see commands/__init__)

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
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..receipts.refresh import refresh
    from ..receipts.status import build_status

    plan = load_plan_or_explain(str(args.plan), PROG, allow_commands=args.allow_commands, as_json=args.json)
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
            from ..receipts.itip import answer_counts  # heavy: loaded only when needed (start-up time, see commands/__init__)

            data = {"release": {"name": plan.release.name, "version": plan.release.version}, **status.as_dict(),
                    "invitation_answers": answer_counts(plan, status.rows)}
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
    # heavy: loaded only when needed (start-up time, see commands/__init__)
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
            "matched": result.matched, "unverified": result.unverified, "other_send": result.other_send,
            "unmatched": result.unmatched, "duplicates": result.duplicates, "ignored": result.ignored,
            "problems": [{"source": p.source, "message": p.message, "hint": p.hint} for p in result.problems]}


def refresh_summary(result) -> str:
    """One line saying what a refresh read and what became of it (the app shows the same words)."""
    parts = [f"{result.read} new message(s) read", f"{result.new_receipts} new receipt(s)"]
    for count, words in ((result.matched, "credited by id"), (result.unverified, "unverified (matched by address only)"),
                         (result.other_send, "for another send"), (result.unmatched, "matched no delivery"),
                         (result.duplicates, "duplicate(s) of reports already read")):
        if count:
            parts.append(f"{count} {words}")
    return ", ".join(parts)


def short_time(stamp: str | None) -> str:
    """Ledger UTC text as the app shows it too: local "HH:MM" today, "MM-DD HH:MM" another day."""
    return common_short_time(stamp)


def describe(row) -> str:
    """The recipient's fate in one phrase, as the table's last column (receipts.status.fate_of)."""
    from ..receipts.status import fate_of  # heavy: loaded only when needed (start-up time, see commands/__init__)

    return fate_of(row, short_time).describe()


def render_text(plan, status, result=None) -> str:
    lines = [visible(f"{plan.release.name} {plan.release.version}") + ": receipts"]
    if result is not None:
        lines.append(f"refreshed: {refresh_summary(result)}")
    if not status.rows:
        lines.append("nothing sent yet")
        return "\n".join(lines)
    headers = ("communique", "group", "recipient", "sent", "delivered", "displayed", "acknowledged", "outcome")
    table = [headers]
    for row in status.rows:
        table.append(tuple(visible(cell) for cell in (
            row.communique_id, row.group_id, row.recipient, short_time(row.sent), short_time(row.delivered),
            short_time(row.displayed), short_time(row.acknowledged), describe(row))))
    width = terminal_width()
    lines.append("")
    lines += table_lines(table, width)
    for title, coverages in (("by stakeholder group (people)", status.by_group),
                             ("by communique (deliveries)", status.by_communique)):
        lines.append("")
        lines.append(title)
        for c in coverages:
            lines.append("  " + coverage_line(c, compact=width is not None))
    from ..receipts.itip import answer_counts  # heavy: loaded only when needed (start-up time, see commands/__init__)

    answers = answer_counts(plan, status.rows)
    if answers:
        lines.append("")
        lines.append("calendar invitations (each person's latest answer)")
        for ident, tally in answers.items():
            lines.append("  " + visible(ident) + ": " + " · ".join(f"{n} {word}" for word, n in tally.items()))
    lines.append("")
    lines.append("overall  " + coverage_line(status.overall, compact=width is not None))
    if status.other_send:
        lines.append(f"{status.other_send} report(s) for another send (not counted here)")
    if status.unmatched:
        lines.append(f"{status.unmatched} report(s) matched no delivery")
    return "\n".join(lines)


def table_lines(table: list[tuple[str, ...]], width: int | None) -> list[str]:
    """The receipts table. Piped (`width` None): one aligned row per delivery, every character kept.
    On a terminal: one block per communique (its id as the heading), the columns fitted to `width`;
    too narrow (80 columns), displayed, acknowledged, delivered and group are left out first (the
    outcome says what they would), then recipients are cut; an outcome that still does not fit (a
    bounce's reason) is shown whole below its row, wrapped, never cut."""
    if width is None:
        return padded(table, fit(table, limit=None))
    header, rows = table[0][1:], [row[1:] for row in table[1:]]
    # recipient (1) gives way first, down to 24; the outcome keeps at least "confirmed: read 12-02 04:17"
    widths = fit([header, *rows], limit=width, indent=2, shrink=1, min_shrink=24, drop=(4, 5, 3, 0), min_last=27)
    out: list[str] = []
    current = None
    for communique, row in zip((r[0] for r in table[1:]), rows):
        if communique != current:
            current = communique
            out += ([""] if out else []) + [communique] + padded([header], widths, indent=2)
        out += padded([row], widths, indent=2)
        if cell_width(row[-1]) > widths[-1]:
            out += textwrap.wrap(row[-1], width - 1, initial_indent="      ", subsequent_indent="      ",
                                 break_on_hyphens=False)
    return out


def coverage_line(c, *, compact: bool = False) -> str:
    """One coverage as a line; `compact` (a terminal) leaves out bounced and unknown when none and
    their shares otherwise, so the line fits 80 columns."""
    parts = [f"{visible(c.id)}: {c.total}", f"reached {c.reached} ({c.percent(c.reached):.0f}%)",
             f"confirmed {c.confirmed} ({c.percent(c.confirmed):.0f}%)"]
    for word, n in (("bounced", c.bounced), ("unknown", c.unknown)):
        if not compact:
            parts.append(f"{word} {n} ({c.percent(n):.0f}%)")
        elif n:
            parts.append(f"{word} {n}")
    return " · ".join(parts)
