"""Headless subcommands of `relcomm`, one module each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import consent

from ..plan import Plan, PlanError, load_plan

if TYPE_CHECKING:
    from ..ledger import Ledger


def add_allow_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-commands", action="store_true",
                        help="run the plan's commands (release gate, password commands) this once without "
                             "recorded consent; `relcomm allow PLAN` records it instead")


def load_plan_or_explain(path: str, prog: str, *, allow_commands: bool = False) -> Plan | None:
    """The plan, or None after printing why it cannot be loaded (the caller exits 2).

    The plan's commands are granted when consent is recorded or `allow_commands` is given;
    otherwise nothing the plan names will run (the gate and command secrets are refused).
    """
    try:
        plan = load_plan(path)
    except PlanError as error:
        print(f"{prog}: the plan cannot be loaded\n{error}", file=sys.stderr)
        return None
    consent.apply(plan, allow_commands=allow_commands)
    return plan


def state_dir(plan: Plan, state: str | None) -> Path:
    """Where the plan's ledger lives: `--state DIR`, or `.relcomm` beside the plan."""
    return Path(state).expanduser() if state else plan.state_dir


def open_ledger_or_explain(folder: Path, prog: str) -> "Ledger | None":
    """The ledger in `folder`, or None after printing why it cannot be opened (the caller exits 2)."""
    from ..ledger import Ledger, LedgerError

    try:
        return Ledger.open(folder)
    except LedgerError as error:
        print(f"{prog}: {error.message}" + (f"\n  hint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return None
