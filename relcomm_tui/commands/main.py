"""The `relcomm` command: open the app on a plan, or run a headless subcommand.

Each subcommand lives in `relcomm_tui/commands/<name>.py` (`-` written `_`) with `add_arguments(parser)` and
`run(args) -> int`, imported only when used so `relcomm validate` starts fast.

A headless subcommand's stdout and stderr go through `terminal_text.PrintableStream` while it runs:
the commands make every value they print `visible()` themselves (so a line break inside a name is
shown, not obeyed), and this net makes sure nothing they forget can send ESC, a C1 control or a
bidi override to the terminal. The app (and `demo`, which opens it) draws the terminal itself.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import app as open_app
from .. import __version__
from ..common.terminal_text import PrintableStream

SUBCOMMANDS = {
    "validate": "check a plan and list every finding",
    "send": "send the plan's communiques (headless)",
    "review": "sign off stakeholder groups (every required group when none is named)",
    "confirm": "tick a manual step done (who, when, a note)",
    "status": "show every delivery and its state",
    "checkpoint": "release a checkpoint of the plan's script (or skip a wait, or go on after a halt)",
    "receipts": "show, refresh or parse receipts",
    "report": "write the audit record of the release's communications",
    "demo": "run the whole journey against a built-in mail server",
    "schema": "print the plan format's JSON Schema",
    "allow": "show the commands a plan runs (gate, password commands) and allow them on this host",
    "adopt-state": "review a ledger relcomm did not write for you (an older relcomm's) and adopt it as yours",
    "cancel-invitation": "cancel a calendar invitation that went out (METHOD:CANCEL to everyone invited)",
}


DRAWS_THE_TERMINAL = {"demo"}  # opens the app, which writes its own escape sequences


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relcomm",
        description="Validate, send and confirm release communications.",
        epilog="Open the app: relcomm PLAN.toml   |   Try it: relcomm demo",
    )
    parser.add_argument("--version", action="version", version=f"relcomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _module(name).add_arguments(command)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The subcommand's arguments. A subcommand may rewrite its words first
    (`receipts PLAN` is `receipts show PLAN`)."""
    if argv and argv[0] in SUBCOMMANDS:
        normalize = getattr(_module(argv[0]), "normalize_argv", None)
        if normalize is not None:
            argv = [argv[0], *normalize(argv[1:])]
    return build_parser().parse_args(argv)


def _module(name: str):
    return importlib.import_module(f"relcomm_tui.commands.{name.replace('-', '_')}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `relcomm PLAN [--theme T]` opens the app; anything else is a subcommand.
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version"):
        return open_app.main(argv)
    args = parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    if args.command in DRAWS_THE_TERMINAL:
        return _run(args)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(stdout), PrintableStream(stderr)
    try:
        return _run(args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = stdout, stderr


def _run(args: argparse.Namespace) -> int:
    try:
        return _module(args.command).run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `relcomm status PLAN | head`: the reader has what it wanted; no traceback, no second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
