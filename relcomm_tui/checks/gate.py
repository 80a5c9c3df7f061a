"""The release gate: the plan's command that declares the release a success, run only with consent.

It runs from the plan's folder, in its own process group (killed whole on timeout), and only
when consent covers the command and the files it names as they are now.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

from ..plan import consent
from ..plan.model import Plan


@dataclass(frozen=True)
class GateResult:
    """The release gate's verdict, for the checklist and `relcomm send`."""

    ok: bool
    output: str
    configured: bool
    returncode: int | None = None
    timed_out: bool = False
    missing: bool = False
    not_allowed: bool = False  # consent for the plan's commands is missing: it was not run



def run_gate(plan: Plan) -> GateResult:
    """Run the release gate (shell command, from the plan's folder) and say whether it passed."""
    command = plan.release.gate
    if not command:
        return GateResult(False, "", False)
    # Consent looks at the files the gate names now (a `git pull` may have changed scripts/ok.sh
    # since it was given); the process starts right after, so the window is as short as it can be.
    if not consent.may_run(plan.root, command):
        return GateResult(False, "", True, not_allowed=True)
    try:
        process = subprocess.Popen(
            command, shell=True, cwd=plan.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own group, so a timeout kills its children too
        )
    except OSError as error:
        return GateResult(False, f"cannot run the gate: {error.strerror}", True, missing=True)
    try:
        out, _ = process.communicate(timeout=plan.release.gate_timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, _ = process.communicate()
        text = out.decode("utf-8", errors="replace").strip()
        return GateResult(False, text, True, returncode=None, timed_out=True)
    text = out.decode("utf-8", errors="replace").strip()
    # sh says "not found" and exits 127 (126: found but not executable).
    missing = process.returncode in (126, 127)
    return GateResult(process.returncode == 0, text, True, returncode=process.returncode, missing=missing)



def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
