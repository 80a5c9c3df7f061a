"""`relcomm demo`: the whole journey on a fresh machine, with no mail server of your own.

It copies the Orion sample plan into a new folder, starts an embedded SMTP server on
loopback (which later writes delivery reports, bounces and read receipts into the plan's
receipts Maildir) and a local webhook receiver, points the plan at them, and opens the app.
`--headless` runs validate, send and a receipts refresh without the app and prints them.

The sample is a script (issue 14): chat and pager first, the support briefing, a checkpoint, the
release page, customers after a wait and not before a time, the presentation. The demo compresses
time (a wait of minutes runs in seconds: `TIME_SCALE`, said on screen) and moves the customers'
`not_before` to a little after now; headless, it plays the engineer: it releases the checkpoint
and ticks the manual tasks, and prints each as it does.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import shutil
import sys
from pathlib import Path

from platformdirs import user_state_dir

from . import app
from . import receipts as receipts_command
from .send import summary_parts
from ..common.resources import sample_plan
from ..plan import consent, load_plan
from ..script.clock import Clock
from ..store.ledger import AWAITING, Ledger

TIME_SCALE = 60           # the app: a 15-minute wait takes 15 seconds
HEADLESS_TIME_SCALE = 300  # headless: 3 seconds
NOT_BEFORE_IN = 40         # seconds from now for the customers' "not before" (app); headless: 5

# Demo customers whose mail bounces (the embedded server's rules: "unknown" -> 5.1.1, "full" -> 5.2.2).
BOUNCING_CUSTOMERS = (
    "Former Customer,unknown.user@initech.example.com,Initech",
    "Busy Buyer,inbox.full@globex.example.com,Globex",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="folder for the demo's plan and state (default: a new folder in your user state folder)")
    parser.add_argument("--headless", action="store_true", help="no app: validate, send, collect receipts and print them")
    parser.add_argument("--report-delay", type=float, nargs=2, default=(1.0, 6.0), metavar=("MIN", "MAX"),
                        help="seconds before the demo server's delivery reports come back (default 1 6)")
    parser.add_argument("--theme", help="the app's theme")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every other command starts without aiosmtpd and the demo
    # servers (tests/test_import_hygiene_demo.py holds the CLI to that).
    from ..demo.mailserver import LoopbackMailServer
    from ..demo.webhook_receiver import WebhookReceiver

    folder = prepare_folder(args.dir)
    state = folder / ".relcomm"
    server = LoopbackMailServer(
        maildir=state / "demo-server" / "delivered",
        write_reports_to=state / "receipts",
        report_delay=tuple(args.report_delay),
        mdn_fraction=0.4,
        seed=42,
    )
    receiver = WebhookReceiver()
    with server, receiver:
        plan_path = write_plan(folder, smtp_port=server.port, webhook_url=receiver.url("/hooks/eng-chat"),
                               not_before_in=5 if args.headless else NOT_BEFORE_IN)
        allow_own_gate(plan_path)
        print(f"Demo plan: {plan_path}")
        print(f"Embedded mail server on {server.host}:{server.port}; delivery reports go to {state / 'receipts'}")
        if args.headless:
            return asyncio.run(_headless(plan_path, server))
        print(f"Time is compressed {TIME_SCALE}x in the demo: the script's waits of minutes run in seconds.")
        argv = [str(plan_path), "--time-scale", str(TIME_SCALE)] + (["--theme", args.theme] if args.theme else [])
        code = app.main(argv)
        server.flush_reports()  # whatever was still on its way, so reopening later shows it
    print(f"\nReopen any time (receipts are in the plan's folder): relcomm {plan_path}")
    return code


def prepare_folder(wanted: Path | None) -> Path:
    """A fresh folder holding a copy of the Orion sample plan."""
    if wanted is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        wanted = Path(user_state_dir("relcomm")) / "demo" / stamp
    wanted = wanted.expanduser().resolve()
    if wanted.exists() and any(wanted.iterdir()):
        raise SystemExit(f"relcomm demo: {wanted} is not empty; give a new folder with --dir")
    wanted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample_plan("orion"), wanted, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".relcomm"))
    with open(wanted / "stakeholders" / "customers.csv", "a", encoding="utf-8") as customers:
        customers.write("\n".join(BOUNCING_CUSTOMERS) + "\n")
    return wanted


def allow_own_gate(plan_path: Path) -> None:
    """The demo plan is relcomm's own sample: its gate script ships with relcomm, so it is allowed."""
    try:
        consent.allow(load_plan(plan_path))
    except OSError as error:  # cannot remember it: the app will ask instead
        print(f"relcomm demo: consent for the sample gate not recorded ({error.strerror}); the app will ask")


def write_plan(folder: Path, *, smtp_port: int, webhook_url: str, not_before_in: float = NOT_BEFORE_IN) -> Path:
    """Point the copied plan at the embedded servers; move the script's time of day to just after now."""
    plan_path = folder / "plan.toml"
    text = plan_path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^host = .*$", 'host = "127.0.0.1"', text, count=1)
    text = re.sub(r"(?m)^port = \d+$", f"port = {smtp_port}", text, count=1)
    text = re.sub(r"(?m)^security = .*$", 'security = "none"', text, count=1)
    base = webhook_url.split("/hooks/")[0]
    # Every post (the chat webhook, the on-call pager) goes to the local receiver, under its own path.
    text = re.sub(r'(?m)^url = "http://127\.0\.0\.1:8765(/[^"]*)"', lambda m: f'url = "{base}{m.group(1)}"', text)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=not_before_in)
    text = re.sub(r'(?m)^not_before = "[^"]*"', f'not_before = "{soon:%H:%M:%S} UTC"', text)
    # The presentation's invitation is for tomorrow, at the time of day the sample gives.
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    text = re.sub(r"(?m)^start = \d{4}-\d\d-\d\d", f"start = {tomorrow:%Y-%m-%d}", text)
    plan_path.write_text(text, encoding="utf-8")
    return plan_path


async def _headless(plan_path: Path, server) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..checks.rules import run_checks
    from ..delivery.engine import DeliveryChanged, SendError
    from ..receipts.refresh import refresh

    plan = load_plan(plan_path)
    errors = [f for f in run_checks(plan) if f.blocks_sending]
    for finding in errors:
        print(f"error[{finding.id}] {finding.message} ({finding.location})", file=sys.stderr)
    if errors:
        return 1
    print(f"Validated: {len(plan.communiques)} communiques, {len(plan.groups)} groups, no errors.")

    def show(event) -> None:
        if isinstance(event, DeliveryChanged) and event.state not in ("queued", "sending"):
            print(f"  {event.communique_id:<22} {event.recipient:<52} {event.state}")

    ledger = Ledger.open(plan.state_dir)
    try:
        try:
            counts = await _follow_script(plan, ledger, show)
        except SendError as error:
            print(f"relcomm demo: {error.message}", file=sys.stderr)
            return 1
        print("Sent: " + ", ".join(summary_parts(counts, 0)))
        print("Collecting the delivery reports and read receipts the demo server wrote back...")
        server.flush_reports()  # no need to wait out the realistic delays here
        result = refresh(plan, ledger)
        print(f"Read {result.read} reports: {result.matched} matched a delivery, {result.unmatched} did not.")
        for problem in result.problems:
            print(f"  problem: {problem}", file=sys.stderr)
    finally:
        ledger.close()
    receipts_command.run(argparse.Namespace(plan=str(plan_path), allow_commands=True))
    print(f"\nOpen it in the app: relcomm {plan_path}")
    return 0 if result.ok else 1


async def _follow_script(plan, ledger, show) -> dict[str, int]:
    """Run the sample's script with time compressed, playing the engineer: release the checkpoint,
    tick the manual tasks. Returns the deliveries per state."""
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..channels.manual import confirm_manual
    from ..script.runner import ScriptRunner

    clock = Clock(HEADLESS_TIME_SCALE)
    print(f"Following the plan's script, time compressed {HEADLESS_TIME_SCALE:g}x (a 15-minute wait takes 3 seconds):")
    said: dict[str, str] = {}

    def watch(state) -> None:
        for view in state.steps:
            line = f"{view.label}" + (f": {view.reason}" if view.reason else "")
            if said.get(view.id) != line:
                said[view.id] = line
                print(f"  step {view.id:<14} {line}")
            if view.status == "checkpoint":
                print(f"  demo: releasing the checkpoint of {view.id}, as the engineer would "
                      f"(relcomm checkpoint PLAN {view.id})")
                runner.release(view.id, note="demo")
            elif view.to_tick:
                for ident in view.step.send:
                    for record in ledger.deliveries(plan.release.version, ident):
                        if record.state == AWAITING:
                            confirm_manual(ledger, record.id, "demo", "done in the demo")
                            print(f"  demo: {record.recipient_display}: {ident} done (relcomm confirm PLAN {ident} ...)")
                runner.wake()

    runner = ScriptRunner(plan, ledger, clock=clock, on_event=show, on_state=watch, poll=0.5)
    await runner.run()
    state = await runner.evaluate()  # the last tasks were ticked just now: record the step finished
    print(f"Script: {state.summary}")
    counts: dict[str, int] = {}
    for communique in plan.communiques:
        for state, n in ledger.counts(plan.release.version, communique.id).items():
            counts[state] = counts.get(state, 0) + n
    return counts
