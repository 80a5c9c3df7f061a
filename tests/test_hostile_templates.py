"""Hostile templates (issue 6): sandbox escapes, file reads through include/import/extends, endless
loops, runaway recursion and gigantic output. Each one must end as a finding on the template
(`template-error` or `template-limit`), quickly, without a large allocation and without reading
or printing anything from outside the plan's folder."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import campaign
import pytest
from plan_helpers import base_plan, write_plan
from sandbox_helpers import fresh_sandbox  # noqa: F401  (every test renders in a sandbox made for it)

from relcomm_tui.checks.rules import run_checks
from relcomm_tui.compose import RenderError, render
from relcomm_tui.plan import load_plan

CANARY = "CANARY-7f3a-outside-the-plan"

# (label, template, the rule that must report it)
ESCAPES = [
    ("__class__.__mro__", "{{ ''.__class__.__mro__ }}", "template-error"),
    ("__subclasses__", "{{ [].__class__.__base__.__subclasses__() }}", "template-error"),
    ("__globals__ via cycler", "{{ cycler.__init__.__globals__ }}", "template-error"),
    ("__globals__ via joiner", "{{ joiner.__call__.__globals__['os'] }}", "template-error"),
    ("__globals__ via namespace", "{{ namespace.__init__.__globals__.os.system('id') }}", "template-error"),
    ("__builtins__", "{{ range.__globals__['__builtins__']['open']('/etc/passwd').read() }}", "template-error"),
    ("self.__init__", "{{ self.__init__.__globals__ }}", "template-error"),
    ("attr filter", "{{ recipient|attr('__class__') }}", "template-error"),
    ("private field of a variable", "{{ recipient._values }}", "template-error"),
    ("release.date internals", "{{ release.date.__class__.__mro__ }}", "template-error"),
    ("str.format attribute walk", "{{ '{0.__class__.__mro__}'.format(recipient) }}", "template-error"),
    ("str.format globals", "{{ '{0.__init__.__globals__}'.format(cycler) }}", "template-error"),
    ("format_map attribute walk", "{{ '{x.__class__}'.format_map({'x': release}) }}", "template-error"),
    ("% with __class__", "{{ '%s' % recipient.__class__ }}", "template-error"),
    ("namespace attribute set", "{% set ns = namespace() %}{% set ns.__class__ = 1 %}{{ ns }}", "template-syntax"),
]
FILE_READS = [
    ("include ../", "{% include '../outside.txt' %}"),
    ("include absolute", "{% include '/etc/passwd' %}"),
    ("include symlink to outside", "{% include 'link.txt' %}"),
    ("include inside the folder", "{% include 'inside.txt' %}"),
    ("import ../", "{% import '../outside.txt' as m %}{{ m }}"),
    ("from-import absolute", "{% from '/etc/passwd' import x %}{{ x }}"),
    ("extends ../", "{% extends '../outside.txt' %}"),
    ("extends symlink", "{% extends 'link.txt' %}"),
    ("include a variable", "{% include recipient.company %}"),
]
LIMITS = [
    ("'x' * 10**9", "{{ 'x' * 10**9 }}"),
    ("list * 10**9", "{{ [1, 2] * 10**9 }}"),
    ("nested range", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    ("triple nested loop with output", "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}"),
    ("recursive macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
    ("mutually recursive macros", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}"),
    ("recursive loop over itself", "{% set ns = namespace() %}{% set ns.l = [ns] %}{% for x in ns.l recursive %}{{ loop(x.l) }}{% endfor %}"),
    ("doubling with ~", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
    ("doubling with +", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
    ("doubling a list", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"),
    ("doubling in a block set", "{% set ns = namespace(s='y') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}"),
    ("huge power", "{{ 9 ** 999999 }}"),
    ("repeated squaring", "{% set n = namespace(v=3) %}{% for i in range(64) %}{% set n.v = n.v * n.v %}{% endfor %}"),
    ("center(10**9)", "{{ 'x'|center(10**9) }}"),
    ("indent by a huge string", "{{ ('a\n' * 1000)|indent('x' * 100000) }}"),
    ("replace explosion", "{{ ('a' * 1000)|replace('', 'x' * 1000) }}"),
    ("str.replace explosion", "{{ ('a' * 1000).replace('a', 'b' * 100000) }}"),
    ("join of repeated big text", "{{ (['x' * 100000] * 1000)|join }}"),
    ("ljust(10**9)", "{{ 'x'.ljust(10**9) }}"),
    ("expandtabs(10**9)", "{{ 'a\tb'.expandtabs(10**9) }}"),
    ("format width", "{{ '{:>1000000000}'.format('x') }}"),
    ("nested format width", "{{ '{:>{w}}'.format('x', w=10**9) }}"),
    ("% width", "{{ '%1000000000s' % 'x' }}"),
    ("% star width", "{{ '%*s' % (10**9, 'x') }}"),
    ("format filter width", "{{ '%1000000000d'|format(1) }}"),
    ("lipsum", "{{ lipsum(10**6) }}"),
    ("batch fill", "{{ [1]|batch(10**9, 0)|list }}"),
    ("slice count", "{{ [1]|slice(10**9)|list }}"),
    ("big output by loop", "{% for i in range(99999) %}{{ 'x' * 99 }}{% endfor %}"),
    ("printing a list of big texts", "{% set ns = namespace(l=[]) %}{% for i in range(200) %}{% set ns.l = ns.l + ['x' * 10000] %}{% endfor %}{{ ns.l }}"),
]


def hostile_plan(folder: Path, template: str, *, inline: bool = False) -> Path:
    """The base plan with `template` as the announce template, a canary file beside the plan's folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    (folder.parent / "outside.txt").write_text(f"{CANARY}\n", encoding="utf-8")
    data = base_plan()
    files: dict[str, str | bytes] = {"inside.txt": "inside the folder\n"}
    if inline:
        del data["communiques"][0]["template"]
        data["communiques"][0]["body"] = template
    else:
        files["announce.md.j2"] = template
    plan_file = write_plan(folder, data, files)
    link = folder / "link.txt"
    if not link.exists():
        link.symlink_to(folder.parent / "outside.txt")
    return plan_file


def judge(folder: Path, template: str, rules: set[str], *, inline: bool = False) -> tuple[bool, str]:
    """Validate a plan whose template is hostile: (held, why not)."""
    plan = load_plan(hostile_plan(folder, template, inline=inline))
    tracemalloc.start()
    started = time.monotonic()
    try:
        findings = run_checks(plan, gate=False, secrets=False)
        communique = plan.communique("announce")
        group, recipient = plan.audience(communique)[0]
        try:
            render(plan, communique, group, recipient)
            refused_as = ""
        except RenderError as error:
            refused_as = error.kind
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    mine = [f for f in findings if f.communique_id == "announce" and f.id in rules]
    expected_file = plan.path if inline else folder / "announce.md.j2"
    if not mine:
        return False, f"no {rules} finding: {[(f.id, f.message) for f in findings]}"
    if refused_as not in ("security", "limit", "error", "syntax"):
        return False, f"the message still renders, or fails as {refused_as!r}"
    if any(CANARY in f.message or CANARY in f.hint for f in findings):
        return False, "a finding shows the content of a file outside the plan"
    if any(f.location.file != expected_file or f.location.line is None for f in mine):
        return False, f"not located at {expected_file}: {[str(f.location) for f in mine]}"
    if not all(f.hint for f in mine):
        return False, "no hint"
    # Generous bounds: the limits stop these in well under a second; without them they run for
    # hours or allocate gigabytes.
    if elapsed > 30:
        return False, f"took {elapsed:.1f} s"
    if peak > 256 * 2**20:
        return False, f"allocated {peak / 2**20:.0f} MiB"
    return True, ""


def run_cases(tmp_path: Path, area: str, cases: list[tuple[str, str, set[str]]], *, inline: bool = False) -> None:
    failures = []
    for number, (label, template, rules) in enumerate(cases):
        held, why = judge(tmp_path / f"case{number}" / "plan", template, rules, inline=inline)
        if not held:
            failures.append(f"{label}: {why}")
    campaign.record("input", area, tried=len(cases), held=len(cases) - len(failures))
    assert failures == []


@pytest.mark.campaign
def test_sandbox_escapes_are_refused_as_findings(tmp_path: Path) -> None:
    run_cases(tmp_path, "templates: sandbox escapes", [(label, t, {rule}) for label, t, rule in ESCAPES])


@pytest.mark.campaign
def test_include_import_extends_never_read_a_file(tmp_path: Path) -> None:
    run_cases(tmp_path, "templates: include/import/extends", [(label, t, {"template-error"}) for label, t in FILE_READS])


@pytest.mark.campaign
@pytest.mark.slow
def test_endless_loops_recursion_and_huge_output_hit_a_limit(tmp_path: Path) -> None:
    run_cases(tmp_path, "templates: loops, recursion, huge output", [(label, t, {"template-limit"}) for label, t in LIMITS])


@pytest.mark.campaign
def test_inline_bodies_and_subjects_get_the_same_limits(tmp_path: Path) -> None:
    cases = [(label, t, {"template-limit"}) for label, t in LIMITS[:6]]
    cases += [(label, t, {"template-error"}) for label, t, _ in ESCAPES[:4]]
    run_cases(tmp_path, "templates: inline bodies", cases, inline=True)
    # And a hostile subject: it is reported on the subject's line in plan.toml.
    data = base_plan()
    data["communiques"][1]["subject"] = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    plan = load_plan(write_plan(tmp_path / "subject", data))
    findings = [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "template-limit"]
    assert len(findings) == 1 and findings[0].communique_id == "ops-notice"
    assert findings[0].location.line == plan.source.splitlines().index(
        next(line for line in plan.source.splitlines() if line.startswith("subject = \"{% for"))) + 1


def test_a_copy_of_the_plan_in_another_folder_is_blamed_on_its_own_file(tmp_path: Path) -> None:
    """Next release's plan often starts as a copy of this one: an inline body's error must name the
    file being checked, not the first copy this process happened to read (same content, same digest)."""
    data = base_plan()
    data["communiques"][0].pop("template")
    data["communiques"][0]["body"] = "{{ 'x' * 10**9 }}"
    for copy in ("first", "second"):
        plan = load_plan(write_plan(tmp_path / copy, data))
        findings = [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "template-limit"]
        assert [f.location.file for f in findings] == [plan.path]


def test_ordinary_templates_stay_well_inside_the_limits(tmp_path: Path) -> None:
    """The limits must not refuse what real release notes do: loops over a few thousand items, macros, format."""
    template = ("{% macro item(n) %}- item {{ '%04d'|format(n) }} {{ '{:>8}'.format(n) }}{% endmacro %}"
                "{% for group in groups %}{{ group.name|center(40) }}{% endfor %}\n"
                "{% for n in range(5000) %}{{ item(n) }}\n{% endfor %}"
                "{{ ('ab' * 1000)|replace('a', 'xy')|length }} {{ 2 ** 64 }} {{ recipient.name|upper }}\n")
    plan = load_plan(write_plan(tmp_path, files={"announce.md.j2": template}))
    communique = plan.communique("announce")
    rendered = render(plan, communique, *plan.audience(communique)[0])
    assert "- item 4999     4999" in rendered.text and "3000 18446744073709551616 ADA LOVELACE" in rendered.text
    assert not [f for f in run_checks(plan, gate=False, secrets=False) if f.id.startswith("template")]


def test_a_limit_is_reported_once_not_per_recipient(tmp_path: Path) -> None:
    """10,000 recipients must not mean 10,000 renders that each run into the budget."""
    rows = "".join(f"P{i},p{i}@acme.example.com,Acme\n" for i in range(2000))
    plan = load_plan(hostile_plan(tmp_path / "plan", LIMITS[2][1]))
    (tmp_path / "plan" / "customers.csv").write_text("name,email,company\n" + rows, encoding="utf-8")
    plan = load_plan(plan.path)
    started = time.monotonic()
    findings = [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "template-limit"]
    assert len(findings) == 1
    assert time.monotonic() - started < 30
    assert os.path.exists(plan.path)  # nothing was removed or rewritten
