"""Small plans written to tmp_path for the loader, compose, checks and validate tests.

`base_plan()` is a valid plan as a dict; a test changes what it is about and writes it with
`write_plan`, which also writes any template or CSV files the test names.
"""

from __future__ import annotations

import copy
from pathlib import Path

import tomli_w

from relcomm_tui.plan import consent
from relcomm_tui.checks.rules import run_checks
from relcomm_tui.checks.findings import Finding
from relcomm_tui.plan import Plan, load_plan

BASE = {
    "format": 1,
    "release": {"name": "Vega", "version": "2.0.0", "notes": "CHANGELOG.md", "gate": "true"},
    "sender": {"from": "Vega Releases <releases@vega.example.com>", "reply_to": "team@vega.example.com",
               "receipts_to": "receipts@vega.example.com", "list_id": "releases.vega.example.com"},
    "transport": {"smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"}},
    "stakeholders": [
        {"id": "customers", "name": "Customers", "required": True, "members": "customers.csv"},
        {"id": "ops", "name": "Operations", "members": ["Noor Haddad <noor@vega.example.com>"]},
    ],
    "communiques": [
        {"id": "announce", "to": ["customers"], "channel": "email",
         "subject": "{{ release.name }} {{ release.version }} is out", "template": "announce.md.j2"},
        {"id": "ops-notice", "to": ["ops"], "channel": "email", "subject": "Deployed {{ release.version }}",
         "body": "Hello {{ recipient.name }}, {{ release.version }} is live.\n"},
    ],
}

FILES = {
    "customers.csv": "name,email,company\nAda Lovelace,ada@acme.example.com,Acme\nGrace Hopper,grace@globex.example.com,Globex\n",
    "announce.md.j2": "Hello {{ recipient.name }},\n\n{{ release.name }} {{ release.version }} is ready for {{ recipient.company }}.\n\n{{ notes }}\n",
    "CHANGELOG.md": "# Changelog\n\n## 2.0.0 - 2026-11-26\n\n- New: faster search.\n\n## 1.9.0\n\n- Old things.\n",
}


def base_plan() -> dict:
    return copy.deepcopy(BASE)


def write_plan(folder: Path, data: dict | None = None, files: dict[str, str | bytes] | None = None,
               *, defaults: bool = True) -> Path:
    """Write plan.toml (and the base files unless `defaults` is false, then `files`) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, str | bytes] = dict(FILES) if defaults else {}
    wanted.update(files or {})
    for name, content in wanted.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    plan_file = folder / "plan.toml"
    plan_file.write_text(tomli_w.dumps(base_plan() if data is None else data), encoding="utf-8")
    return plan_file


def check(folder: Path, data: dict | None = None, files: dict[str, str | bytes] | None = None, *,
          gate: bool = False, secrets: bool = True) -> tuple[Plan, list[Finding]]:
    plan = load_plan(write_plan(folder, data, files))
    consent.grant(plan)  # these tests are about the checks: the engineer has allowed the plan's gate
    return plan, run_checks(plan, gate=gate, secrets=secrets)


def ids(findings: list[Finding]) -> list[str]:
    return [f.id for f in findings]


def only(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.id == rule]
    assert len(matching) == 1, f"expected one {rule}, got {[(f.id, f.message) for f in findings]}"
    return matching[0]
