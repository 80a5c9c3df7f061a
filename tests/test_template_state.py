"""Templates keep no state between renders (issue 10, item 5).

Before, `{% if groups.append(0) %}{% endif %}` grew a list shared by every render (a cached
context), so a template could render a greeting while it was validated and a phishing text for
later recipients. Now templates run in Jinja's immutable sandbox, every render gets a fresh
context, and the caches hold only immutable values. The property: for any template, recipient k
renders the same text (or the same error) whether or not recipients 1..k-1 were rendered before,
and the checks' renderer (TextRenderer) gives what the send path (`render`) gives.
"""

from __future__ import annotations

from pathlib import Path

import campaign
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_helpers import base_plan, write_plan

from relcomm_tui.checks.rules import run_checks
from relcomm_tui.compose import RenderError, TextRenderer, render
from relcomm_tui.delivery.engine import dry_run
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.plan import load_plan

PHISH = "PHISH-CANARY"
MEMBERS = "name,email,company\n" + "".join(f"Person {i},p{i}@acme.example.com,Co{i}\n" for i in range(6))

# Pieces of templates that try to carry something from one render to the next. Each prints what it
# sees, so any state shows in the text.
STATEFUL = [
    "{% if groups.append(0) %}{% endif %}{{ groups|length }}",
    "{% set l = [] %}{{ l.append(1) }}{{ l|length }}",
    "{% set d = {} %}{{ d.update(x=1) }}{{ d.setdefault('y', 2) }}{{ d|length }}",
    "{{ groups.__class__ }}",
    "{% set g = groups|list %}{{ g.pop() }}{{ g|length }}",
    "{% set ns = namespace(count=0) %}{% set ns.count = ns.count + 1 %}{{ ns.count }}",
    "{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{% macro m(seen=[]) %}{{ seen.append(1) }}{{ seen|length }}{% endmacro %}{{ m() }}{{ m() }}",
    "{% macro m(n=namespace(c=0)) %}{% set n.c = n.c + 1 %}{{ n.c }}{% endmacro %}{{ m() }}{{ m() }}",
    "{% set top = [recipient.name] %}{{ top|join }}",
    "{% macro w() %}{{ caller() }}{{ varargs|length }}{% endmacro %}{% call w(1, 2) %}[{{ recipient.name }}]{% endcall %}",
    "{% set c = cycler('x', 'y') %}{{ c.next() }}{{ c.next() }}{{ c.current }}",
    "{% set j = joiner('+') %}{{ j() }}a{{ j() }}b",
    "{{ (recipient.company|list|sort)|join }}",
    "{{ groups|map(attribute='name')|list }}",
    "{{ groups|batch(1)|list|length }}",
    "{{ {'b': 1, 'a': 2}.keys() - ['c'] }}",
    "{{ cycler(1) }}{{ joiner() }}{{ range }}{{ lipsum }}{{ 'x'.upper }}{{ groups|map('string') }}",
    "{{ lipsum(1, false, 5, 9) }}",
    "{{ [1, 2, 3]|random }}",
    "{{ range(3)|list|reverse }}{{ [3, 1]|sort|first }}",
    "{{ recipient.name|upper }} of {{ recipient.company }}",
    "{% set x = (notes|wordcount) %}{{ x }}",
    "{{ self }}",
    "{% set recipient = 'overwritten' %}{{ recipient }}",
    "{% set groups = groups + ('extra',) %}{{ groups|length }}",
    "{% if recipient.name.endswith('3') %}" + PHISH + "{% else %}Hello{% endif %}",
]


def renderings(plan, communique, order: list[int]) -> list[tuple[str, str] | tuple[str, str, str]]:
    """What each recipient in `order` renders to, with one TextRenderer (as the checks do)."""
    audience = plan.audience(communique)
    renderer = TextRenderer(plan, communique)
    results = []
    for index in order:
        group, recipient = audience[index]
        try:
            results.append(renderer.render_text(group, recipient))
        except RenderError as error:
            results.append(("error", error.kind, error.message))
    return results


def sent_text(plan, communique, index: int):
    group, recipient = plan.audience(communique)[index]
    try:
        rendered = render(plan, communique, group, recipient)
        return rendered.subject, rendered.text
    except RenderError as error:
        return ("error", error.kind, error.message)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(STATEFUL), min_size=1, max_size=5), k=st.integers(1, 5),
       earlier=st.lists(st.integers(0, 5), max_size=8))
def test_recipient_k_renders_the_same_whatever_was_rendered_before(folder: Path, pieces, k, earlier) -> None:
    template = "\n".join(pieces)
    data = base_plan()
    data["communiques"][0]["to"] = ["customers", "ops"]
    plan = load_plan(write_plan(folder, data, {"announce.md.j2": template, "customers.csv": MEMBERS}))
    communique = plan.communique("announce")
    alone = renderings(plan, communique, [k])[0]
    after_others = renderings(plan, communique, [*range(k), *earlier, k])[-1]
    assert after_others == alone
    # Twice in a row with the same renderer, and by the send path, in any order: the same.
    assert renderings(plan, communique, [k, k]) == [alone, alone]
    for index in earlier:
        sent_text(plan, communique, index)
    assert sent_text(plan, communique, k) == alone


@pytest.mark.campaign
def test_each_stateful_piece_renders_the_same_in_every_order(tmp_path: Path) -> None:
    """The campaign row: every piece alone, every recipient, forwards, backwards and twice."""
    failures = []
    for number, piece in enumerate(STATEFUL):
        data = base_plan()
        data["communiques"][0]["to"] = ["customers", "ops"]
        plan = load_plan(write_plan(tmp_path / f"case{number}", data,
                                    {"announce.md.j2": piece, "customers.csv": MEMBERS}))
        communique = plan.communique("announce")
        forward = renderings(plan, communique, list(range(7)))
        backward = renderings(plan, communique, list(reversed(range(7))))
        alone = [renderings(plan, communique, [k])[0] for k in range(7)]
        sent = [sent_text(plan, communique, k) for k in reversed(range(7))][::-1]
        if not (forward == list(reversed(backward)) == alone == sent):
            failures.append(f"{piece}: {forward} / {list(reversed(backward))} / {sent}")
    campaign.record("input", "templates: state kept between renders", tried=len(STATEFUL),
                    held=len(STATEFUL) - len(failures))
    assert failures == []


def test_the_issue_template_is_refused_and_validation_and_dry_run_agree(tmp_path: Path) -> None:
    """The repro: greeting while validated, phishing for later recipients in `send --dry-run`."""
    template = ("{% if groups.append(0) %}{% endif %}"
                "{% if groups|length > 3 %}" + PHISH + "{% else %}Hello {{ recipient.name }}{% endif %}\n")
    data = base_plan()
    plan = load_plan(write_plan(tmp_path, data, {"announce.md.j2": template, "customers.csv": MEMBERS}))
    findings = [f for f in run_checks(plan, gate=False, secrets=False) if f.communique_id == "announce"]
    assert [f.id for f in findings] == ["template-error"], [(f.id, f.message) for f in findings]
    assert "cannot change a value (`append`)" in findings[0].message and findings[0].location.line == 1
    ledger = Ledger.open(plan.state_dir)
    result = dry_run(plan, ledger, only=["announce"])
    ledger.close()
    outbox = plan.state_dir / "outbox"
    written = [p.read_text(encoding="utf-8") for p in outbox.rglob("*") if p.is_file()]
    assert result.written == 0 and len(result.failures) == 6 and not any(PHISH in text for text in written)


def test_a_template_that_only_reads_renders_the_same_for_every_order(tmp_path: Path) -> None:
    """The sandbox still allows what real templates do: loops, namespace counters, filters, macros."""
    template = ("{% set ns = namespace(n=0) %}{% for g in groups %}{% set ns.n = ns.n + 1 %}{{ g.name }} {% endfor %}"
                "{{ ns.n }} {{ groups|map(attribute='id')|join(',') }} {{ recipient.name }}\n")
    data = base_plan()
    data["communiques"][0]["to"] = ["customers", "ops"]
    plan = load_plan(write_plan(tmp_path, data, {"announce.md.j2": template, "customers.csv": MEMBERS}))
    communique = plan.communique("announce")
    forward = renderings(plan, communique, list(range(7)))
    backward = renderings(plan, communique, list(reversed(range(7))))
    assert forward == list(reversed(backward))
    assert forward[0][1] == "Customers Operations 2 customers,ops Person 0\n"
    assert forward[6][1] == "Customers Operations 2 customers,ops Noor Haddad\n"
