"""Asked before a plan's commands (release gate, password commands) first run on this host."""

from __future__ import annotations

from ... import consent
from ...plan import Plan
from .ask import AskDialog


class ConsentDialog(AskDialog):
    """True: record consent and run them. False: check the plan without running them."""

    def __init__(self, plan: Plan) -> None:
        commands = consent.plan_commands(plan)
        super().__init__(
            f"This plan wants to run {len(commands)} command{'s' if len(commands) != 1 else ''} on this host:",
            consent.describe(plan) + f"\n\nThey run as you, from {plan.root}. Allow them only if you "
            "trust whoever wrote the plan. Until then the gate is not run and sending stays locked.",
            yes="Allow and run", no="Not now", title="Allow the plan's commands?",
        )
