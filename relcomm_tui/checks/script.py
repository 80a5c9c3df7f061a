"""Validation findings for the plan's script (`[[steps]]`), located like every other finding.

Errors: ids that name nothing, a communique sent by two steps or by none, steps that wait for each
other in a circle, steps that can never start, `confirmed` with nobody to confirm. Warnings: a
`not_before` already past, and a `not_before` the waits before it make impossible to keep.
"""

from __future__ import annotations

import datetime as dt

from ..common.times import format_time
from ..plan.locate import close_match, find_line, keypath_text, shown
from ..plan.model import Location, Plan, Step
from .findings import RULES, Finding

# The rule ids (script-...) are listed with the others in checks.RULES and docs/plan-format.md.


def script_findings(plan: Plan, now: dt.datetime | None = None) -> list[Finding]:
    if not plan.steps:
        return []
    now = now or dt.datetime.now(dt.timezone.utc)
    found: list[Finding] = []
    index_of = {step.id: index for index, step in enumerate(plan.steps)}
    communique_ids = [c.id for c in plan.communiques]

    def at(*parts: str | int) -> Location:
        return Location(plan.path, find_line(plan.source, parts), None, keypath_text(parts))

    def add(rule: str, message: str, hint: str, where: Location, communique: str | None = None) -> None:
        found.append(Finding(rule, RULES[rule][0], message, hint, where, None, communique))

    # Who sends each communique.
    sender_of: dict[str, str] = {}
    for index, step in enumerate(plan.steps):
        for ident in step.send:
            if plan.communique(ident) is None:
                close = close_match(ident, communique_ids)
                add("script-unknown", f"step {step.id} sends {shown(ident)}, which is no communique",
                    f"did you mean {close!r}?" if close else f"the communiques are: {', '.join(communique_ids)}",
                    at("steps", index, "send"))
            elif ident in sender_of and sender_of[ident] != step.id:
                add("script-duplicate", f"communique {ident} is sent by step {sender_of[ident]} and by step {step.id}",
                    "a communique goes out once: keep it in one step", at("steps", index, "send"), ident)
            else:
                sender_of.setdefault(ident, step.id)
    for index, communique in enumerate(plan.communiques):
        if communique.id not in sender_of and communique.spec.reminder_for is None:
            add("script-unscheduled", f"communique {communique.id} is in no step of the script: it would never be sent",
                "add it to a step's `send` (or make it a follow-up with `reminder_for`)",
                at("communiques", index, "id"), communique.id)

    # The graph: a step depends on steps (directly, or through a communique they send).
    unknown: dict[str, list[str]] = {}
    edges: dict[str, list[str]] = {}
    for index, step in enumerate(plan.steps):
        edges[step.id] = []
        for ident in step.after:
            if ident in index_of:
                edges[step.id].append(ident)
            elif ident in sender_of:
                edges[step.id].append(sender_of[ident])
            elif plan.communique(ident) is not None:
                unknown.setdefault(step.id, []).append(ident)
                add("script-unreachable", f"step {step.id} comes after communique {ident}, which no step sends",
                    f"add {ident} to a step's `send`, or take it out of `after`", at("steps", index, "after"))
            else:
                unknown.setdefault(step.id, []).append(ident)
                close = close_match(ident, list(index_of) + communique_ids)
                add("script-unknown", f"step {step.id} comes after {shown(ident)}, which is no step or communique",
                    f"did you mean {close!r}?" if close else f"the steps are: {', '.join(index_of)}",
                    at("steps", index, "after"))

    in_cycle = _cycles(edges)
    reported: set[frozenset[str]] = set()
    for cycle in in_cycle:
        key = frozenset(cycle)
        if key in reported:
            continue
        reported.add(key)
        order = list(reversed(cycle))  # as they would go: each after the one before it
        first = min(order, key=index_of.__getitem__)
        path = " -> ".join(order[order.index(first):] + order[:order.index(first)] + [first])
        step = plan.steps[index_of[first]]
        add("script-cycle", f"steps wait for each other in a circle: {path} (each waits for the one before it)",
            "take one of them out of the other's `after`" + (
                "; a step without `after` comes after the step before it" if not step.after_written else ""),
            at("steps", index_of[first], "after") if step.after_written else at("steps", index_of[first]))
    cyclic = {s for cycle in in_cycle for s in cycle}
    blocked = set(unknown) | cyclic
    changed = True
    while changed:
        changed = False
        for step_id, deps in edges.items():
            if step_id not in blocked and any(d in blocked for d in deps):
                blocked.add(step_id)
                changed = True
    for step in plan.steps:
        if step.id in blocked and step.id not in cyclic and step.id not in unknown:
            cause = next(d for d in edges[step.id] if d in blocked)
            add("script-unreachable", f"step {step.id} can never start: it comes after {cause}, which never starts",
                f"fix step {cause} first", at("steps", index_of[step.id]))

    for index, step in enumerate(plan.steps):
        if step.confirmed:
            names = [c for ident in step.after for c in (plan.steps[index_of[ident]].send if ident in index_of else (ident,))]
            people = [c for c in names if (com := plan.communique(c)) is not None and com.per_recipient]
            if not people:
                add("script-unconfirmable", f"step {step.id} waits for {step.confirmed}% confirmations, but "
                    + ("it comes after nothing" if not names else f"{', '.join(names)} reach no person (posts only)"),
                    "confirmations come from people (email, manual): put such a communique in `after`, or remove `confirmed`",
                    at("steps", index, "confirmed"))
        if step.not_before is not None and step.not_before <= now:
            add("script-time-past", f"step {step.id}: not_before {format_time(step.not_before)} is already past, "
                "so it will not wait", "fix the date and time (the release day?), or remove `not_before`",
                at("steps", index, "not_before"))

    for step_id, (earliest, why) in _earliest(plan, edges, cyclic | blocked).items():
        step = plan.steps[index_of[step_id]]
        if step.not_before is not None and earliest is not None and earliest > step.not_before:
            add("script-time-pushed", f"step {step_id} cannot go at {format_time(step.not_before)} (its not_before): "
                f"{why}: {format_time(earliest)} at the earliest",
                "shorten a wait, or move a not_before earlier or this one later",
                at("steps", index_of[step_id], "not_before"))
    return found


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Each circle of steps once, as the list of its steps in order (depth-first search)."""
    cycles: list[list[str]] = []
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        colour[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if colour.get(nxt, 0) == 0:
                visit(nxt)
            elif colour.get(nxt) == 1:
                cycles.append(path[path.index(nxt):])
        path.pop()
        colour[node] = 2

    for node in edges:
        if colour.get(node, 0) == 0:
            visit(node)
    return cycles


def _earliest(plan: Plan, edges: dict[str, list[str]], skip: set[str]) -> dict[str, tuple[dt.datetime | None, str]]:
    """Per step: the earliest time the steps before it (their not_before plus the waits on the way)
    allow it to go, ignoring its own not_before, and which waits say so. None: nothing fixes a time."""
    by_id = {s.id: s for s in plan.steps}
    memo: dict[str, tuple[dt.datetime | None, str]] = {}

    def start_of(step: Step) -> tuple[dt.datetime | None, str]:
        before, why = pre(step)
        if step.not_before is not None and (before is None or step.not_before >= before):
            return step.not_before, f"{step.id} not before {format_time(step.not_before)}"
        return before, why

    def pre(step: Step) -> tuple[dt.datetime | None, str]:
        if step.id in memo:
            return memo[step.id]
        best: tuple[dt.datetime | None, str] = (None, "")
        for dep in edges.get(step.id, []):
            if dep in skip or dep not in by_id:
                continue
            when, why = start_of(by_id[dep])
            if when is not None and (best[0] is None or when > best[0]):
                best = (when, why)
        if best[0] is not None and step.wait:
            try:
                later = best[0] + dt.timedelta(seconds=step.wait)
            except OverflowError:  # a not_before in the year 9999
                later = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
            best = (later, f"{best[1]}, then {step.id} waits {step.wait_text}")
        memo[step.id] = best
        return best

    result = {}
    for step in plan.steps:
        if step.id not in skip:
            result[step.id] = pre(step)
    return result
