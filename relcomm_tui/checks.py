"""Validation: every problem in a plan as a Finding with a stable id, severity, place and hint.

Errors block sending; warnings do not. (Contract stub: implemented by the checks work.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .plan.model import Location, Plan

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    id: str                      # stable rule id, e.g. "group-unreached", "template-undefined"
    severity: Severity
    message: str                 # one line, in the user's words
    hint: str                    # how to fix it
    location: Location           # file, line where known, key path
    group_id: str | None = None       # the stakeholder group it concerns, if any (checklist jumps there)
    communique_id: str | None = None  # the communique it concerns, if any (preview jumps there)

    @property
    def blocks_sending(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict:
        return {
            "id": self.id, "severity": self.severity, "message": self.message, "hint": self.hint,
            "file": str(self.location.file), "line": self.location.line, "column": self.location.column,
            "keypath": self.location.keypath, "group": self.group_id, "communique": self.communique_id,
        }


def run_checks(plan: Plan, *, gate: bool = True, secrets: bool = True) -> list[Finding]:
    """Every finding for the plan, errors first. `gate`/`secrets` off skip the slow external checks."""
    raise NotImplementedError
