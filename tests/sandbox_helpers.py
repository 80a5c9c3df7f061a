"""A template sandbox built for each test (issue 15).

`compose.templates.ENVIRONMENT` is made at import, before a mutation run switches a mutant on, so a
broken `_Sandbox.__init__` (a guard not installed, `random` kept) would pass every test that uses it.
The guard tests render in a sandbox made afresh instead, with an empty cache of compiled templates."""

from __future__ import annotations

import tracemalloc

import pytest

from relcomm_tui.compose import templates


@pytest.fixture(autouse=True)
def fresh_sandbox(monkeypatch):
    monkeypatch.setattr(templates, "ENVIRONMENT", templates.new_environment())
    monkeypatch.setattr(templates, "_COMPILED", {})


PEAK_MIB = 16  # a refused result would be megabytes to gigabytes; the checks allocate next to nothing


def rendered(template: str, context: dict | None = None, **values) -> str:
    """The template rendered as announce.md.j2 with `context` (or the keyword values)."""
    return templates.render_source(templates.Source(template, "announce.md.j2"), {**(context or {}), **values})


def refused(template: str, context: dict | None = None, kind: str = "limit", **values) -> templates.TemplateProblem:
    """The problem a template is refused with: of `kind`, before it allocated PEAK_MIB."""
    tracemalloc.start()
    try:
        with pytest.raises(templates.TemplateProblem) as caught:
            rendered(template, context, **values)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.kind == kind, caught.value.message
    assert peak < PEAK_MIB * 2**20, f"{template}: allocated {peak / 2**20:.0f} MiB before refusing"
    return caught.value
