"""A template sandbox built for each test (issue 15).

`compose.templates.ENVIRONMENT` is made at import, before a mutation run switches a mutant on, so a
broken `_Sandbox.__init__` (a guard not installed, `random` kept) would pass every test that uses it.
The guard tests render in a sandbox made afresh instead, with an empty cache of compiled templates."""

from __future__ import annotations

import pytest

from relcomm_tui.compose import templates


@pytest.fixture(autouse=True)
def fresh_sandbox(monkeypatch):
    monkeypatch.setattr(templates, "ENVIRONMENT", templates.new_environment())
    monkeypatch.setattr(templates, "_COMPILED", {})
