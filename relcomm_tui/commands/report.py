"""`relcomm report PLAN [--format md|html|csv] [-o FILE] [--state DIR]`: the audit record of the
release's communications (relcomm_tui.audit.report), on stdout or into a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import load_plan_or_explain, open_ledger_or_explain, state_dir
from ..store.ledger import LEDGER_NAME

PROG = "relcomm report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--format", choices=("md", "html", "csv"), default=None,
                        help="md (default), html or csv; with -o the file's suffix chooses when not given")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")


def run(args: argparse.Namespace) -> int:
    from ..audit.report import collect, render  # heavy: loaded only when needed (start-up time, see commands/__init__)

    fmt = args.format
    if fmt is None and args.output:
        fmt = {".html": "html", ".htm": "html", ".csv": "csv"}.get(Path(args.output).suffix.lower())
    fmt = fmt or "md"
    plan = load_plan_or_explain(args.plan, PROG)
    if plan is None:
        return 2
    folder = state_dir(plan, args.state)
    # A state folder that is a link is opened, so that it is refused (and said so), never followed.
    if not (folder / LEDGER_NAME).exists() and not folder.is_symlink():
        print(f"{PROG}: nothing has been sent for {plan.release.name} {plan.release.version} "
              f"(no ledger in {folder})\n  hint: send first, or give the ledger's folder with --state DIR",
              file=sys.stderr)
        return 1
    ledger = open_ledger_or_explain(folder, PROG)
    if ledger is None:
        return 2
    try:
        text = render(collect(plan, ledger), fmt)
    finally:
        ledger.close()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).expanduser().write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"{PROG}: cannot write {args.output}: {error.strerror}\n  hint: choose another file with -o",
              file=sys.stderr)
        return 1
    print(f"wrote the {fmt} record to {args.output}", file=sys.stderr)
    return 0
