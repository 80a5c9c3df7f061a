"""Headless subcommands of `relcomm`, one module each.

`relcomm --help` imports every subcommand module (to list its arguments), so what a module imports
at its top every command pays for at start-up (over SSH too). At the top: the standard library,
`common`, `plan`, `store`, a few small modules (app.review, app.credentials, script.clock,
plan.invitation) and the other command modules. Inside the function that uses them, under a
`# heavy` comment: the layers that take tens to hundreds of milliseconds to import (app.board and
app.readiness, delivery and the channels, checks and compose with Jinja2 and Markdown, receipts,
invitations with icalendar, the script's progress, scheduler and runner, the audit report, the demo
servers, the Textual app), so `relcomm --help` loads none of them and a subcommand only those it
uses. This package itself also leaves the ledger (sqlite3) and asyncio out of its top: `relcomm
--version`, `schema`, `allow` and `validate` need neither.

Elsewhere in relcomm_tui an import sits inside a function only for start-up time or to break an
import cycle, and its comment says which.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from ..plan import consent
from ..common.terminal_text import visible, visible_lines

from ..plan import Plan, PlanError, load_plan

if TYPE_CHECKING:
    from ..store.ledger import Ledger


def add_allow_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-commands", action="store_true",
                        help="run the plan's commands (release gate, password commands) this once without "
                             "recorded consent; `relcomm allow PLAN` records it instead")


def print_json_error(plan: str | Path, kind: str, detail: dict) -> None:
    """What a `--json` command prints on stdout instead of its answer when it cannot give one:
    the shape `relcomm validate --json` uses for a plan that does not load."""
    print(json.dumps({"plan": str(plan), "ok": False, kind: detail}, indent=2))


def load_plan_or_explain(path: str, prog: str, *, allow_commands: bool = False, as_json: bool = False) -> Plan | None:
    """The plan, or None after printing why it cannot be loaded (the caller exits 2): on stderr,
    or with `as_json` as a JSON error object on stdout (`{"plan", "ok": false, "load_error"}`).

    The plan's commands are granted when consent is recorded or `allow_commands` is given;
    otherwise nothing the plan names will run (the gate and command secrets are refused).
    """
    try:
        plan = load_plan(path)
    except PlanError as error:
        if as_json:
            print_json_error(path, "load_error", error.as_dict())
        else:
            print(f"{prog}: the plan cannot be loaded\n{visible_lines(error)}", file=sys.stderr)
        return None
    consent.apply(plan, allow_commands=allow_commands)
    return plan


def state_dir(plan: Plan, state: str | None) -> Path:
    """Where the plan's ledger lives: `--state DIR`, or `.relcomm` beside the plan."""
    return Path(state).expanduser() if state else plan.state_dir


def open_ledger_or_explain(folder: Path, prog: str, *, json_for: Plan | None = None) -> "Ledger | None":
    """The ledger in `folder`, or None after printing why it cannot be opened (the caller exits 2);
    `json_for`: the plan of a `--json` command, which gets a JSON error object on stdout instead."""
    # here, not at the top: the ledger (sqlite3) is not needed by `--version`, `schema`, `validate` or `allow`
    from ..store.ledger import Ledger, LedgerError

    try:
        return Ledger.open(folder)
    except LedgerError as error:
        if json_for is not None:
            print_json_error(json_for.path, "ledger_error", {"folder": str(folder), "message": error.message,
                                                             "hint": error.hint})
            return None
        print(f"{prog}: {visible(error.message)}" + (f"\n  hint: {visible(error.hint)}" if error.hint else ""),
              file=sys.stderr)
        return None


def fail(prog: str, message: str, hint: str = "", stream: TextIO | None = None) -> int:
    """A command's refusal on stderr: what is wrong and, when known, how to fix it; exit code 2.
    Messages quote plans and servers, so they are shown with control characters made visible."""
    stream = stream or sys.stderr
    print(f"{prog}: {visible(message)}", file=stream)
    if hint:
        print(f"  hint: {visible(hint)}", file=stream)
    return 2


def stop_on_signals(cancel: Callable[[], None], saying: str) -> None:
    """The first Ctrl-C or SIGTERM stops cleanly (`cancel`: what is in flight gets its reply
    recorded) after printing `saying`; a second one stops at once."""
    import asyncio  # here, not at the top: ~20 ms to import, and only the sending commands need it

    interrupted: list[bool] = []

    def stop() -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print(f"\nstopping: {saying} (Ctrl-C again to stop at once)", file=sys.stderr)
        cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
