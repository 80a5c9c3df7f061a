"""`relcomm send PLAN --yes`: send the plan's communiques headless, exactly once.

Sends only when `app.readiness` says the plan may be sent: the same rule as the app's checklist
(no error, the plan's commands allowed, every required group signed off for this plan's digest
with `relcomm review` or in the app, the release gate passed when the plan names one). `--yes`
stands in for typing the release version, never for the review; without it a terminal user is
asked to type the version, and without a terminal the command refuses. Nothing left to send is
said and exits as the deliveries stand. `--dry-run` and `--test` send nothing to the stakeholders
and need no review, only a plan without errors. A progress line on a
terminal, one line per outcome otherwise. Exit 0 when every delivery is accepted, 1 when any
is rejected, deferred or in doubt, 2 for plan or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from . import add_allow_commands, fail, load_plan_or_explain, open_ledger_or_explain, state_dir, stop_on_signals
from .resend import resend_to_corrected
from .send_script import send_scripted
from ..app.credentials import NoPassword, refuse_headless, smtp_password, terminal_prompt
from ..store.ledger import (ACCEPTED, AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED,
                            SENDING, STATE_LABELS, who_am_i)
from ..common.terminal_text import visible

OUTCOME_STATES = (ACCEPTED, REJECTED, IN_DOUBT, DEFERRED, MARKED_DELIVERED)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--yes", action="store_true",
                        help="confirm without typing the version (never stands in for the review: relcomm review PLAN)")
    parser.add_argument("--only", metavar="ID", action="append", default=[],
                        help="send only this communique (repeatable); names follow-ups explicitly")
    parser.add_argument("--dry-run", action="store_true", help="render every message into STATE/outbox; send nothing")
    parser.add_argument("--resend-in-doubt", action="store_true",
                        help="send deliveries that are in doubt again (same Message-ID)")
    parser.add_argument("--retry-failed", action="store_true", help="send rejected deliveries again")
    parser.add_argument("--resend-to", metavar="OLD=NEW", action="append", default=[],
                        help="send the communique that bounced at OLD again, to the corrected address NEW "
                             "(repeatable; every communique that bounced there, or those named by --only)")
    parser.add_argument("--test", metavar="ADDRESS", nargs="?", const="",
                        help="test send: one communique (the first, or --only) to ADDRESS or [sender] test_to")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    parser.add_argument("--password-stdin", action="store_true", help="read the SMTP password from standard input")
    parser.add_argument("--json", action="store_true",
                        help="a plan with a script: one JSON object per line (step changes, outcomes, the end) for CI")
    # Demo and tests only: a plan's waits last 1/N as long (said on every progress line). Never from the plan.
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    add_allow_commands(parser)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):  # closed or replaced streams (pipes, test harnesses)
        return False


def _fail(message: str, hint: str = "", stream: TextIO | None = None) -> int:
    return fail("relcomm send", message, hint, stream)


def run(args: argparse.Namespace) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..app.board import board
    from ..delivery.engine import SendError

    plan = load_plan_or_explain(args.plan, "relcomm send", allow_commands=args.allow_commands)
    if plan is None:
        return 2

    if args.resend_to and (args.dry_run or args.test is not None or args.resend_in_doubt or args.retry_failed):
        return _fail("--resend-to goes alone", "correct addresses in a run of its own, without --dry-run, --test, "
                     "--resend-in-doubt or --retry-failed")
    if args.dry_run or args.test is not None or args.resend_to:
        # Rehearsals send nothing to the stakeholders, and a resend to a corrected address sends what
        # was already reviewed and sent: they need a plan without errors, not a review.
        refused = _validate(plan)
        if refused is not None:
            return refused

    password: str | None = None
    if args.password_stdin:
        if not args.yes and args.test is None and not args.dry_run:
            return _fail("--password-stdin needs --yes", "standard input carries the password, not the confirmation")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            return _fail("no password on standard input")

    ledger = open_ledger_or_explain(state_dir(plan, args.state), "relcomm send")
    if ledger is None:
        return 2
    login, host = who_am_i()
    try:
        if args.dry_run:
            return _dry_run(plan, ledger, args.only, login)
        try:
            where = board(plan, ledger, args.only or None)
        except SendError as error:
            return _fail(error.message, error.hint)
        if args.test is None and not args.resend_to:
            verdict = _readiness(plan, ledger, where, args)
            if verdict is not None:
                return verdict
        if password is None and not args.password_stdin and _needs_email(plan, args):
            password = _password(plan)
            if isinstance(password, int):
                return password
        if args.test is not None:
            return _test_send(plan, ledger, args, password, login)
        if args.resend_to:
            return resend_to_corrected(plan, ledger, args, password, login, host,
                                       confirm=lambda plan, question=None: _confirm(plan, where, question), fail=_fail,
                                       printer=_Printer(sys.stdout))
        if not args.yes and not _confirm(plan, where):
            return 2
        if plan.steps and not args.only:
            # The plan's script: steps in order, waits, checkpoints, halts (issue 14).
            return asyncio.run(send_scripted(plan, ledger, args, password, login, host))
        if plan.steps:
            print("note: --only sends the communiques named now, outside the script's order", file=sys.stderr)
        return asyncio.run(_send(plan, ledger, args, password, login, host))
    finally:
        ledger.close()


def _readiness(plan, ledger, where, args) -> int | None:
    """The one rule (app.readiness): None to go on; else the exit code after saying why not."""
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..app.readiness import DONE, LOCKED, check
    from ..checks.rules import run_checks

    try:
        left = where.left(retry_failed=args.retry_failed, resend_in_doubt=args.resend_in_doubt)
        findings = run_checks(plan, gate=True, secrets=True) if left else []
        answer = check(plan, ledger, where, retry_failed=args.retry_failed, resend_in_doubt=args.resend_in_doubt,
                       findings=findings)
    except NotImplementedError:
        return _fail("this build cannot validate plans yet, and relcomm never sends an unvalidated plan")
    if answer.verdict == DONE:
        print(visible(f"{plan.release.name} {plan.release.version}: nothing left to send. {where.summary()}"))
        unfinished = sum(row.in_send and row.state not in FINAL_STATES and row.state != AWAITING for row in where.rows)
        return 1 if unfinished else 0
    if answer.verdict == LOCKED:
        print(f"relcomm send: not sending: {'; '.join(visible(r.text) for r in answer.reasons)}", file=sys.stderr)
        for reason in answer.reasons:
            if reason.hint:
                print(f"  {visible(reason.text)}: {visible(reason.hint)}", file=sys.stderr)
        for finding in findings:
            if finding.blocks_sending:
                print(visible(f"{finding.location}: {finding.severity}: {finding.message} [{finding.id}]"),
                      file=sys.stderr)
                if finding.hint:
                    print(f"  hint: {visible(finding.hint)}", file=sys.stderr)
        return 2
    for warning in answer.warnings:
        print(f"relcomm send: warning: {visible(warning.text)}", file=sys.stderr)
    return None


def _needs_email(plan, args) -> bool:
    from ..delivery.engine import select_communiques  # heavy: loaded only when needed (start-up time, see commands/__init__)

    if args.test is not None:
        return bool(plan.smtp.username)
    return any(c.channel == "email" for c in select_communiques(plan, args.only or None))


def _validate(plan) -> int | None:
    from ..checks.rules import run_checks  # heavy: loaded only when needed (start-up time, see commands/__init__)

    try:
        findings = run_checks(plan, gate=True, secrets=True)
    except NotImplementedError:
        return _fail("this build cannot validate plans yet, and relcomm never sends an unvalidated plan")
    errors = [f for f in findings if f.blocks_sending]
    if not errors:
        return None
    print(f"relcomm send: not sending: {len(errors)} problem(s) in the plan", file=sys.stderr)
    for finding in errors:
        print(visible(f"{finding.location}: {finding.severity}: {finding.message} [{finding.id}]"), file=sys.stderr)
        if finding.hint:
            print(f"  hint: {visible(finding.hint)}", file=sys.stderr)
    print("  fix them (relcomm validate PLAN lists every finding) and send again", file=sys.stderr)
    return 2


def _password(plan) -> str | int | None:
    """The one credentials policy: the plan's reference, else a masked prompt on a terminal, else refuse."""
    try:
        return smtp_password(plan, terminal_prompt if _isatty(sys.stdin) else refuse_headless)
    except NoPassword as error:
        return _fail(error.message, error.hint)


def _confirm(plan, where, question: str | None = None) -> bool:
    if not _isatty(sys.stdin):
        _fail("not confirmed: sending needs --yes when there is no terminal to ask on",
              "review the plan (relcomm validate PLAN), then run again with --yes")
        return False
    version = plan.release.version
    try:
        shown = visible(version)
        typed = input(visible(question or where.send_question(plan.release.name, version))
                      + f" Type the version ({shown}) to confirm: ")
    except (EOFError, KeyboardInterrupt):
        print()
        typed = ""
    if typed.strip() != version:
        _fail("not confirmed: nothing was sent")
        return False
    return True


def _dry_run(plan, ledger, only, login) -> int:
    from ..delivery.engine import SendError, dry_run  # heavy: loaded only when needed (start-up time, see commands/__init__)

    try:
        result = dry_run(plan, ledger, only=only or None, who=login)
    except SendError as error:
        return _fail(error.message, error.hint)
    for note in result.skipped:
        print(f"skipped  {visible(note.communique_id)}: {visible(note.reason)}")
    for failure in result.failures:
        print(f"failed   {visible(failure)}")
    # Email goes into the outbox's Maildir (new/), posts, pages and tasks into <outbox>/<communique>/.
    print(f"dry run: {result.written} message(s) written to {visible(result.outbox)}; nothing was sent")
    return 1 if result.failures else 0


def _test_send(plan, ledger, args, password, login) -> int:
    from ..delivery.engine import SendError, send_test_message  # heavy: loaded only when needed (start-up time, see commands/__init__)

    only = args.only[0] if args.only else None
    try:
        result = asyncio.run(send_test_message(plan, ledger, communique_id=only, to=args.test or None,
                                               password=password, who=login))
    except SendError as error:
        return _fail(error.message, error.hint)
    print(visible(f"test message sent to {result.to}: {result.subject!r} ({result.reply})"))
    return 0


class _Printer:
    """Turns engine events into output: one rewritten line on a terminal, one line per outcome otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self._line = 0

    def __call__(self, event) -> None:
        from ..delivery.engine import CommuniqueSkipped, DeliveryChanged, Progress, RunStopped  # heavy: loaded only when needed (start-up time, see commands/__init__)

        if isinstance(event, DeliveryChanged):
            if not self.tty and event.state in OUTCOME_STATES:
                label = STATE_LABELS.get(event.state, event.state)
                print(visible(f"{label:<9} {event.communique_id}  {event.recipient}  {event.detail}".rstrip()),
                      file=self.stream, flush=True)
            elif self.tty and event.state in (REJECTED, IN_DOUBT):
                self._clear()
                print(visible(f"{STATE_LABELS[event.state]}: {event.communique_id} {event.recipient}: {event.detail}"),
                      file=self.stream)
        elif isinstance(event, Progress) and self.tty:
            counts = event.counts
            eta = event.eta_seconds
            text = (f"{event.done}/{event.total} done · {counts.get(ACCEPTED, 0)} accepted · "
                    f"{counts.get(DEFERRED, 0)} deferred · {counts.get(REJECTED, 0)} rejected · "
                    f"{counts.get(IN_DOUBT, 0)} in doubt · {event.rate:.1f} msg/s"
                    + (f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}" if eta else "")
                    + (" · paused" if event.paused else ""))
            self._clear()
            self.stream.write(text)
            self.stream.flush()
            self._line = len(text)
        elif isinstance(event, CommuniqueSkipped):
            self._clear()
            print(visible(f"skipped   {event.communique_id}: {event.reason}"), file=self.stream, flush=True)
        elif isinstance(event, RunStopped):
            self._clear()

    def _clear(self) -> None:
        if self.tty and self._line:
            self.stream.write("\r" + " " * self._line + "\r")
            self._line = 0

    def done(self) -> None:
        if self.tty and self._line:
            self.stream.write("\n")
            self._line = 0


async def _send(plan, ledger, args, password, login, host) -> int:
    from ..delivery.engine import SendEngine  # heavy: loaded only when needed (start-up time, see commands/__init__)

    printer = _Printer(sys.stdout)
    engine = SendEngine(plan, ledger, only=args.only or None, password=password,
                        resend_in_doubt=args.resend_in_doubt, retry_failed=args.retry_failed,
                        on_event=printer, who=login, host=host)
    stop_on_signals(engine.cancel, "waiting for the messages in flight")
    summary, code = await run_engine(plan, engine, printer)
    if summary is not None:
        _report(plan, summary)
    return code


async def run_engine(plan, engine, printer: "_Printer", prog: str = "relcomm send"):
    """Run `engine` with its progress line closed after: (summary, exit code), or (None, 2) after
    saying why it stopped (a stop also reports what had been sent by then)."""
    from ..delivery.engine import SendError, SendStopped  # heavy: loaded only when needed (start-up time, see commands/__init__)

    try:
        summary = await engine.run()
    except SendStopped as error:
        printer.done()
        _report(plan, error.summary)
        return None, fail(prog, f"stopped: {error.message}", error.hint)
    except SendError as error:
        printer.done()
        return None, fail(prog, error.message, error.hint)
    printer.done()
    return summary, summary.exit_code


# Beyond the four every summary shows, each other state a delivery can end a run in, in the user's words.
OTHER_OUTCOMES = {
    MARKED_DELIVERED: "marked delivered", AWAITING: "manual step(s) waiting for you", QUEUED: "not sent yet",
    SENDING: "still sending (another process)",
}


def summary_parts(counts, skipped: int = 0) -> list[str]:
    """Every count of a run's summary: none hidden (a manual step waiting is work left to do)."""
    parts = [f"{counts.get(state, 0)} {STATE_LABELS[state]}" for state in (ACCEPTED, DEFERRED, REJECTED, IN_DOUBT)]
    parts += [f"{counts[state]} {words}" for state, words in OTHER_OUTCOMES.items() if counts.get(state)]
    parts += [f"{n} {state}" for state, n in counts.items()
              if n and state not in OTHER_OUTCOMES and state not in (ACCEPTED, DEFERRED, REJECTED, IN_DOUBT)]
    if skipped:
        parts.append(f"{skipped} communique(s) skipped")
    return parts


def _report(plan, summary) -> None:
    if summary is None:
        return
    counts = summary.counts
    parts = summary_parts(counts, len(summary.skipped))
    ending = " (cancelled)" if summary.cancelled else ""
    print(f"{visible(plan.release.name)} {visible(plan.release.version)}: {', '.join(parts)}; "
          f"{summary.sent_this_run} finished in this run{ending}")
    if counts.get(IN_DOUBT):
        print(f"  {counts[IN_DOUBT]} in doubt: the server may have them. Check with the recipients or the relay, then "
              "mark them delivered in the app, or send them again with --resend-in-doubt (same Message-ID)")
    if counts.get(DEFERRED):
        print("  deferred deliveries are tried again by the next `relcomm send`")
    if counts.get(AWAITING):
        print(f"  {counts[AWAITING]} manual step(s) are yours to do (relcomm status PLAN lists them); when done, "
              f"tick each in the app: relcomm {visible(plan.path)}, send screen, enter")
