"""Headless subcommands of `relcomm`, one module each."""

from __future__ import annotations

import sys

from ..plan import Plan, PlanError, load_plan


def load_plan_or_explain(path: str, prog: str) -> Plan | None:
    """The plan, or None after printing why it cannot be loaded (the caller exits 2)."""
    try:
        return load_plan(path)
    except PlanError as error:
        print(f"{prog}: the plan cannot be loaded\n{error}", file=sys.stderr)
        return None
