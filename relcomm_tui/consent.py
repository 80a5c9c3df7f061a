"""Consent for the commands a plan would run on this host: the release gate and password commands.

A plan written by someone else must not run a command on the deploy host just because it was
opened. Like direnv's `allow`: the first time a plan's set of commands is seen, the engineer is
shown them and asked. Consent is recorded per plan folder and keyed by a digest of the command
texts, so a changed (or added) command needs consent again.

Two layers:
- the record on disk (`allowed/<digest>` under the user config folder, 0600 in a 0700 folder),
  written by `relcomm allow PLAN` or the app's consent dialog;
- the grant in this process (`grant`), which the places that run commands check (`granted`)
  just before running one. Nothing runs unless it was granted: the default is refusal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .config import config_dir
from .plan.locate import keypath_text
from .plan.model import Plan
from .plan.schema import CommandSecret
from .plan.secrets import secret_uses

ALLOWED_DIR = "allowed"
ALLOW_HINT = "review them with `relcomm allow PLAN` (it prints them and records your consent), or pass --allow-commands"

# Command texts granted in this process. Checked at the moment a command would run.
_granted: set[str] = set()


@dataclass(frozen=True)
class PlanCommand:
    what: str     # in the user's words: "release gate", "SMTP password"
    keypath: str  # where the plan names it: "release.gate"
    command: str


def plan_commands(plan: Plan) -> list[PlanCommand]:
    """Every command the plan could make relcomm run, in plan order."""
    found: list[PlanCommand] = []
    if plan.release.gate:
        found.append(PlanCommand("release gate", "release.gate", plan.release.gate))
    found += [PlanCommand(use.what, keypath_text(use.parts), use.ref.command)
              for use in secret_uses(plan) if isinstance(use.ref, CommandSecret)]
    return found


def digest(plan: Plan) -> str:
    """What consent is keyed by: the plan's folder (the gate runs there) and its command texts."""
    hasher = hashlib.sha256()
    hasher.update(str(Path(plan.root).resolve()).encode())
    for command in sorted({c.command for c in plan_commands(plan)}):
        hasher.update(b"\0" + command.encode())
    return hasher.hexdigest()


def _record_path(plan: Plan) -> Path:
    return config_dir() / ALLOWED_DIR / digest(plan)


def needs_consent(plan: Plan) -> bool:
    """True when the plan names commands and consent for exactly these is not recorded."""
    return bool(plan_commands(plan)) and not _record_path(plan).is_file()


def allow(plan: Plan) -> Path:
    """Record consent for the plan's current commands and grant them in this process."""
    path = _record_path(plan)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    lines = [f"plan {plan.path}"] + [f"{c.keypath}\t{c.command}" for c in plan_commands(plan)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    grant(plan)
    return path


def revoke(plan: Plan) -> bool:
    """Forget the recorded consent; True if there was one."""
    _granted.difference_update(c.command for c in plan_commands(plan))
    try:
        _record_path(plan).unlink()
    except FileNotFoundError:
        return False
    return True


def grant(plan: Plan) -> None:
    """Let this process run the plan's commands (after consent, or --allow-commands)."""
    _granted.update(c.command for c in plan_commands(plan))


def apply(plan: Plan, *, allow_commands: bool = False) -> bool:
    """Grant the plan's commands if consent is recorded or given on the command line.

    True when every command the plan names may run.
    """
    if allow_commands or not needs_consent(plan):
        grant(plan)
        return True
    return False


def granted(command: str) -> bool:
    return command in _granted


def all_granted(plan: Plan) -> bool:
    """True when every command the plan names may run in this process."""
    return all(c.command in _granted for c in plan_commands(plan))


def describe(plan: Plan) -> str:
    """The commands as shown before asking: one per line, what and where."""
    return "\n".join(f"  {c.what} ({c.keypath}):\n    {c.command}" for c in plan_commands(plan))
