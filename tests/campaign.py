"""Figures of the hardening campaign (issue 6): what each test tried, what held, and the three
numbers that must stay 0 (duplicates, losses, secret leaks).

A test calls `record(...)` with what it measured, then asserts. The figures are printed at the
end of every pytest run (see conftest.py) and, when RELCOMM_CAMPAIGN_OUT names a file, appended
to it as JSON lines so `bench/faults.py` can print the campaign's table at full size.
Sizes that CI keeps smaller than the campaign's come from `scale()`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

KINDS = ("fault", "input", "secret")


@dataclass
class Tally:
    kind: str  # "fault" injected, bad "input" tried, "secret" route checked
    area: str  # e.g. "smtp: 421 at greeting", "plans: hypothesis mutations"
    tried: int
    held: int  # survived / handled / kept secret
    duplicates: int = 0
    losses: int = 0
    leaks: int = 0


TALLIES: list[Tally] = []


def record(kind: str, area: str, *, tried: int, held: int, duplicates: int = 0, losses: int = 0,
           leaks: int = 0) -> Tally:
    assert kind in KINDS, kind
    tally = Tally(kind, area, tried, held, duplicates, losses, leaks)
    TALLIES.append(tally)
    out = os.environ.get("RELCOMM_CAMPAIGN_OUT")
    if out:
        with open(out, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(tally)) + "\n")
    return tally


def read(path: str | os.PathLike | None) -> list[Tally]:
    """The figures appended to RELCOMM_CAMPAIGN_OUT (by this process or pytest-xdist's workers)."""
    try:
        with open(path, encoding="utf-8") as file:  # type: ignore[arg-type]
            return [Tally(**json.loads(line)) for line in file if line.strip()]
    except (OSError, TypeError):
        return []


def scale(name: str, default: int) -> int:
    """A campaign size: RELCOMM_CAMPAIGN_<NAME> overrides the default CI size."""
    value = os.environ.get(f"RELCOMM_CAMPAIGN_{name.upper()}")
    return int(value) if value else default


DEFAULT_SEED = 20261202  # the fixed default: a failure replays without anything to copy


def seed(name: str) -> int:
    """The seed of a randomised test: RELCOMM_CAMPAIGN_<NAME>, else RELCOMM_TEST_SEED, else the fixed
    DEFAULT_SEED. Fixed by default so every run tries the same cases and a failure replays; set
    RELCOMM_TEST_SEED to explore others. Tests print it (and conftest prints RELCOMM_TEST_SEED)."""
    value = os.environ.get(f"RELCOMM_CAMPAIGN_{name.upper()}") or os.environ.get("RELCOMM_TEST_SEED")
    return int(value) if value else DEFAULT_SEED


def table(tallies: list[Tally]) -> str:
    """The campaign table: one row per area, then totals per kind."""
    rows = [("kind", "area", "tried", "held", "dup", "lost", "leaked")]
    for t in tallies:
        rows.append((t.kind, t.area, str(t.tried), str(t.held), str(t.duplicates), str(t.losses), str(t.leaks)))
    for kind in KINDS:
        mine = [t for t in tallies if t.kind == kind]
        if mine:
            rows.append((kind, "TOTAL", *(str(sum(getattr(t, k) for t in mine))
                                          for k in ("tried", "held", "duplicates", "losses", "leaks"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
