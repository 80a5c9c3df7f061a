"""`relcomm PLAN [--theme NAME] [--state DIR]`: open the app on a plan.

The plan is loaded before Textual starts, so a plan that cannot be loaded is one clear message on
stderr and exit status 2, with no traceback and no half-drawn screen.
"""

from __future__ import annotations

import argparse

from . import add_allow_commands, load_plan_or_explain
from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relcomm", description="Open the release-communications app on a plan.")
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--theme", metavar="NAME",
                        help="colour theme: dark, light, high-contrast (or any Textual theme); remembered")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger and review state (default: PLAN/.relcomm)")
    add_allow_commands(parser)
    parser.add_argument("--version", action="version", version=f"relcomm {__version__}")
    # `relcomm demo` only: the script's waits last 1/N as long (the timeline says so). Never from the plan.
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    plan = load_plan_or_explain(args.plan, "relcomm")
    if plan is None:
        return 2
    # Textual is imported only now: a broken plan is reported without paying for it.
    from ..tui.app import RelcommApp

    app = RelcommApp(plan, theme=args.theme, state_dir=args.state, allow_commands=args.allow_commands)
    if args.time_scale != 1.0:
        # here, not at the top: `relcomm demo` only, and script.clock loads asyncio (a broken plan fails before it)
        from ..script.clock import Clock

        app.script_clock = Clock(args.time_scale)
    app.run()
    return app.return_code or 0
