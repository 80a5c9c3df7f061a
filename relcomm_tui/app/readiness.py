"""May this plan be sent now? One rule, with its reasons, for the checklist and `relcomm send`.

A send may start when all of these hold:

1. the plan on disk loads (the app keeps showing the last good plan when an edit broke it; it
   must not send that one while the disk says something else);
2. the ledger can be used (reviews are read from it, every delivery is recorded in it);
3. the checks ran and found no error, and the plan's commands (gate, password commands) are
   allowed on this host (`gate-not-allowed`, `secret-not-allowed` lock too);
4. every required stakeholder group has a sign-off for this plan's digest: a plan changed after
   its review must be reviewed again (the checklist's space key, or `relcomm review`);
5. the release gate, when the plan names one, passed.

**A plan without a gate is sent, with a warning** (the same in the app and headless): the gate is
optional in the plan format, so a plan without one was written that way; the engineer who types
the version to confirm is then the one declaring the release a success. The checklist, the
confirm dialog and `relcomm send` say so.

When nothing is left to send (every delivery of the send recorded, none queued or deferred, and
none rejected or in doubt that the caller asked to send again), the answer is DONE: nothing would
be sent, so no lock applies; the app shows where things stand and `relcomm send` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..checks.findings import BLOCKING_WARNINGS, Finding
from ..checks.rules import run_checks
from ..store.ledger import Ledger
from ..plan.model import Plan
from .board import Board, plural

READY, LOCKED, DONE = "ready", "locked", "done"

GATE_FAILED = ("gate-failed", "gate-not-found")
GATE_NONE = "gate-none"
GATE_NOT_ALLOWED = "gate-not-allowed"


@dataclass(frozen=True)
class GateStatus:
    """The release gate's verdict, read from the gate findings (so the gate runs once per check)."""

    ok: bool
    configured: bool
    output: str
    allowed: bool = True  # False: not run, the plan's commands have no consent yet

    @classmethod
    def from_findings(cls, findings: Sequence[Finding]) -> "GateStatus":
        for finding in findings:
            if finding.id == GATE_NONE:
                return cls(False, False, finding.message)
            if finding.id == GATE_NOT_ALLOWED:
                return cls(False, True, finding.message, allowed=False)
            if finding.id in GATE_FAILED:
                return cls(False, True, finding.message)
        return cls(True, True, "")


@dataclass(frozen=True)
class Reason:
    """One thing in the way (or, as a warning, worth saying): the same words in the app and headless;
    `key` is what to press in the app, `hint` what to run headless."""

    code: str
    text: str
    key: str = ""
    hint: str = ""

    def in_app(self) -> str:
        return f"{self.text} ({self.key})" if self.key else self.text


@dataclass(frozen=True)
class Reviews:
    """The sign-offs that count for a plan: those made for its current digest."""

    reviewed: frozenset[str]
    stale: bool  # some group was signed off for an earlier version of the plan only


@dataclass(frozen=True)
class Readiness:
    verdict: str                         # READY, LOCKED or DONE
    reasons: tuple[Reason, ...] = ()     # why LOCKED (empty otherwise)
    warnings: tuple[Reason, ...] = ()    # said, never locking (a plan without a gate)
    left: int | None = None              # deliveries a send would send now (None: not known)

    @property
    def may_send(self) -> bool:
        return self.verdict == READY

    def locked_text(self) -> str:
        """"Send locked: 2 errors · 1 required group not reviewed" (the app's words)."""
        return "Send locked: " + " · ".join(reason.in_app() for reason in self.reasons)

    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "left": self.left,
                "reasons": [{"code": r.code, "text": r.text, "hint": r.hint} for r in self.reasons],
                "warnings": [{"code": r.code, "text": r.text, "hint": r.hint} for r in self.warnings]}


def reviews(ledger: Ledger | None, plan: Plan) -> Reviews:
    if ledger is None:
        return Reviews(frozenset(), False)
    version = plan.release.version
    reviewed = ledger.reviewed_groups(version, plan.digest)
    earlier = {row["group_id"] for row in ledger.signoffs(version)
               if row["reviewed"] and row["plan_digest"] != plan.digest}
    return Reviews(frozenset(reviewed), bool(earlier - reviewed))


def unreviewed(plan: Plan, reviewed: frozenset[str] | set[str]) -> list[str]:
    """The required groups without a sign-off for this plan, in plan order."""
    return [group.id for group in plan.groups if group.required and group.id not in reviewed]


def assess(plan: Plan, *, findings: Sequence[Finding] | None, reviewed: Reviews, ledger_ok: bool = True,
           plan_loads: bool = True, checks_error: str | None = None, left: int | None = None) -> Readiness:
    """The rule, from what the caller knows: `findings` None while the checks still run (the app);
    `left` from `Board.left()` (None: unknown, no ledger)."""
    if left == 0 and ledger_ok:
        return Readiness(DONE, left=0)
    reasons: list[Reason] = []
    warnings: list[Reason] = []
    if not ledger_ok:
        reasons.append(Reason("ledger", "the ledger cannot be used", hint="see the message above"))
    if not plan_loads:
        reasons.append(Reason("plan-unloadable", "the plan on disk does not load", key="r reloads",
                              hint="relcomm validate PLAN says where"))
    if checks_error:
        reasons.append(Reason("checks-failed", "the checks could not run", key="r tries again"))
    elif findings is None:
        reasons.append(Reason("checking", "checking the plan…"))
    else:
        errors = sum(f.severity == "error" for f in findings)
        if errors:
            reasons.append(Reason("errors", plural(errors, "error"), hint="relcomm validate PLAN lists them"))
        if any(f.id in BLOCKING_WARNINGS for f in findings):
            reasons.append(Reason("commands-not-allowed", "the plan's commands are not allowed", key="a: review them",
                                  hint="relcomm allow PLAN shows them and asks; or --allow-commands for one run"))
    missing = unreviewed(plan, reviewed.reviewed)
    if missing:
        text = f"{plural(len(missing), 'required group')} not reviewed"
        if reviewed.stale:
            text += " (the plan changed since it was reviewed)"
        reasons.append(Reason("not-reviewed", text, hint=f"read the plan (relcomm validate PLAN, or the app's preview), then sign off {', '.join(missing)}: relcomm review PLAN"))
    if findings is not None and not checks_error:
        gate = GateStatus.from_findings(findings)
        if not gate.configured:
            warnings.append(Reason("no-gate", "no release gate: confirming declares the release a success",
                                   hint='add gate = "scripts/release-ok.sh" to [release] to have a script decide'))
        elif not gate.ok and gate.allowed:
            reasons.append(Reason("gate-failed", "gate not passed", hint=gate.output))
    return Readiness(LOCKED if reasons else READY, tuple(reasons), tuple(warnings), left)


def check(plan: Plan, ledger: Ledger, board: Board, *, retry_failed: bool = False,
          resend_in_doubt: bool = False, findings: Sequence[Finding] | None = None) -> Readiness:
    """The headless answer: runs the checks (gate and secrets included) unless given `findings`."""
    left = board.left(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)
    if left == 0:
        return Readiness(DONE, left=0)
    if findings is None:
        findings = run_checks(plan, gate=True, secrets=True)
    return assess(plan, findings=findings, reviewed=reviews(ledger, plan), left=left)
