"""How big a template's values are as text, and what a render reports when it goes wrong (issue 15).

Every limit on what a template builds rests on one estimate: how many characters a value would be as
text (text: its length; true/false/none: 5; a number: a third of its bits; other values such as
floats: 32; a list, tuple or dict: its brackets, its items and their separators; a namespace: its
attributes as a dict, and 13; a cycler: its items), and how deep lists, dicts and namespaces nest
(at most 20). These tests pin that estimate exactly, at the boundary of the checks that use it (a
join's separator, the output, `pprint`, the nesting limit), for values the template builds (weighed
once, then remembered) and values it is given (weighed on first use). They also pin what
`render_source` reports for each kind of failure (kind, message, hint, line), the output limit at
exactly 1,000,000 characters, and that every render starts from a fresh budget.
"""

from __future__ import annotations

import pytest
from jinja2.utils import Namespace as JinjaNamespace
from sandbox_helpers import fresh_sandbox  # noqa: F401  (every test renders in a sandbox made for it)

from relcomm_tui.compose import templates
from relcomm_tui.compose.templates import MAX_TEXT, Namespace, Source, TemplateProblem, render_source

FILE = "announce.md.j2"
LIMITS_HINT = ("templates may loop 100,000 times, nest 50 macro calls and 20 lists deep, build values of "
               "1,000,000 characters (5,000,000 in all) and run 5 s per message")
NESTING = "lists, tuples or dicts nest more than 20 deep"


def rendered(template: str, context: dict | None = None, **source) -> str:
    return render_source(Source(template, FILE, **source), context or {})


def problem(template: str, context: dict | None = None, **source) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as caught:
        rendered(template, context, **source)
    return caught.value


def refused(template: str, context: dict | None = None) -> TemplateProblem:
    found = problem(template, context)
    assert found.kind == "limit", found.message
    return found


def nested(depth: int, make=lambda inner: [inner], leaf=1):
    value = leaf
    for _ in range(depth):
        value = make(value)
    return value


# -- the weight of a value: exact, at the boundary of a join's separator ------------------------------
# `[value]|join(separator)` is refused when the list's weight (the value's, plus 4 for the brackets and
# the item's separator) and the separator's length go over 1,000,000. One item: the join prints just
# the value, so the separator's length can be tuned to the character.

WEIGHTS = [
    # (an expression, its weight, what it is given)
    ("'abc'", 3, {}),
    ("['ab', 'c']", 2 + (2 + 2) + (1 + 2), {}),
    ("('ab', 'c')", 9, {}),
    ("{'ab': 'cde', 'f': 'g'}", 2 + (2 + 3 + 4) + (1 + 1 + 4), {}),
    ("[0, 255, 1048576]", 2 + (1 + 2) + (3 + 2) + (8 + 2), {}),  # 0, 8 and 21 bits
    ("[true, false, none]", 2 + 3 * (5 + 2), {}),
    ("[1.5]", 2 + 32 + 2, {}),
    ("namespace(x='ab')", (2 + 1 + 2 + 4) + 13, {}),
    ("cycler('ab', 'c')", 2 + (2 + 2) + (1 + 2), {}),
    ("{'ab': 'c'}.items()", 2 + 2 + 1 + 4, {}),
    ("{'ab': 'c'}.keys()", 9, {}),
    ("[['ab', 1], {'c': ('d', none)}, 1.5]", 2 + (9 + 2) + (19 + 2) + (32 + 2), {}),
    # given to the template (weighed afresh, not built by it)
    ("v", 2 + (9 + 2) + (19 + 2) + (32 + 2), {"v": (["ab", 1], {"c": ("d", None)}, 1.5)}),
    ("v", 2 + (2 + (1 + 2) + (1 + 2)) + 1 + 4, {"v": {(1, 2): "a"}}),  # a tuple as a key
    ("[v, v]", 2 + 2 * ((2 + (2 + 2 + 2) + 2) + 2), {"v": [["ab"]]}),  # the same list twice
]


@pytest.mark.parametrize(("value", "weight", "context"), WEIGHTS)
def test_a_value_joined_up_to_the_limit_still_renders_and_one_past_is_refused(value, weight, context):
    template = "{{ [" + value + "]|join('-' * ROOM) }}"
    room = MAX_TEXT - weight - 4
    assert rendered(template.replace("ROOM", str(room)), context)  # one item: the separator is never printed
    found = refused(template.replace("ROOM", str(room + 1)), context)
    assert found.message == f"template over a limit: joining these makes a text over {MAX_TEXT:,} characters"


@pytest.mark.parametrize("value", ["['-' * 999996, 'b']", "{'a': '-' * 999993, 'b': 'c'}"])
def test_a_value_that_reaches_the_limit_before_its_last_item_is_refused(value):
    # the first item brings the weight to exactly 1,000,000; the last one tips it over
    found = refused("{{ (" + value + ")|length }}")
    assert found.message.endswith(f"the template builds is over {MAX_TEXT:,} characters as text")


@pytest.mark.parametrize(("value", "weight", "printed"), [
    ("[1, 2]", 8, len("[1, 2]")),
    ("[ns]", 2 + (2 + 1 + 2 + 4) + 13 + 2, len("[<Namespace {'x': 'ab'}>]")),  # weighed afresh every time
])
def test_a_printed_list_counts_its_weight_towards_the_output(value, weight, printed):
    # the weight and the padding make the output limit exactly (what prints is a little shorter)
    template = "{% set ns = namespace(x='ab') %}{% set pad = '-' * N %}{{ " + value + " }}{{ pad }}"
    assert len(rendered(template.replace("N", str(MAX_TEXT - weight)))) == MAX_TEXT - weight + printed
    found = refused(template.replace("N", str(MAX_TEXT - weight + 1)))
    assert found.message == f"template over a limit: the output is over {MAX_TEXT:,} characters"


# -- a namespace's weight changes: a list or dict holding one is weighed again every time --------------

@pytest.mark.parametrize("holder", ["[ns]", "[1, ns]", "{'a': ns, 'b': 1}", "{'a': ns}"])
def test_a_value_holding_a_namespace_that_grew_is_refused(holder):
    template = ("{% set ns = namespace(x='') %}{% set held = " + holder + " %}"
                "{% set ns.x = '-' * 999990 %}{{ held|length }}")
    found = refused(template)
    assert found.message.endswith(f"the value given to `length` is over {MAX_TEXT:,} characters as text")


def test_a_value_holding_a_small_namespace_still_renders():
    assert rendered("{% set ns = namespace(x='ab') %}{% set held = [ns] %}{% set ns.x = 'abc' %}"
                    "{{ held|length }} {{ ns.x }}") == "1 abc"


# -- nesting: 20 deep is allowed, 21 is refused --------------------------------------------------------

LEAVES = "'a', 1, none, true, 1.5"


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("(", ",)"), ("{'k': ", "}")])
def test_a_literal_nested_20_deep_still_renders_and_21_is_refused(opening, closing):
    def template(depth):
        inner = LEAVES if opening == "[" else "1"
        return "{{ (" + opening * depth + inner + closing * depth + ")|length }}"

    assert rendered(template(20)) == "1"
    assert refused(template(21)).message == f"template over a limit: {NESTING}"


def test_a_literal_nested_20_deep_with_every_kind_of_item_still_renders():
    assert rendered("{{ " + "[" * 20 + LEAVES + "]" * 20 + " }}") == "[" * 20 + "'a', 1, None, True, 1.5" + "]" * 20


@pytest.mark.parametrize("make", [lambda v: [v], lambda v: (v,), lambda v: {"a": v}],
                         ids=["list", "tuple", "dict"])
def test_a_value_given_nested_20_deep_still_renders_and_21_is_refused(make):
    assert rendered("{{ v|length }}", {"v": nested(20, make)}) == "1"
    assert refused("{{ v|length }}", {"v": nested(21, make)}).message == f"template over a limit: {NESTING}"


def test_a_dict_whose_key_nests_counts_the_key_s_depth():
    # the dict is one level, the tuple key the other 19 (then 20)
    assert rendered("{{ v|length }}", {"v": {nested(19, lambda v: (v,)): 1}}) == "1"
    assert refused("{{ v|length }}", {"v": {nested(20, lambda v: (v,)): 1}}).message.endswith(NESTING)


def test_a_dict_whose_value_nests_counts_the_value_s_depth():
    assert rendered("{{ v|length }}", {"v": {"k": nested(19)}}) == "1"
    assert refused("{{ v|length }}", {"v": {"k": nested(20)}}).message.endswith(NESTING)


def test_a_namespace_counts_as_two_levels_itself_and_its_attributes():
    # namespace, its attributes, then 18 lists: 20; 19 lists: 21
    assert rendered("{% set ns = namespace(x=" + "[" * 18 + "1" + "]" * 18 + ") %}ok") == "ok"
    found = refused("{% set ns = namespace(x=" + "[" * 19 + "1" + "]" * 19 + ") %}ok")
    assert found.message == f"template over a limit: {NESTING}"
    assert rendered("{{ v is defined }}", {"v": JinjaNamespace(x=nested(18))}) == "True"
    assert refused("{{ v is defined }}", {"v": JinjaNamespace(x=nested(19))}).message.endswith(NESTING)


def test_a_namespace_inside_lists_20_deep_is_refused():
    found = refused("{{ v|length }}", {"v": nested(20, leaf=JinjaNamespace(x=1))})
    assert found.message == f"template over a limit: {NESTING}"


def test_a_list_built_from_a_list_given_keeps_counting_its_depth():
    assert rendered("{{ [v]|length }}", {"v": nested(19)}) == "1"
    assert refused("{{ [v]|length }}", {"v": nested(20)}).message.endswith(NESTING)
    assert rendered("{{ [[v]]|length }}", {"v": nested(18)}) == "1"
    assert refused("{{ [[v]]|length }}", {"v": nested(19)}).message.endswith(NESTING)


# -- depth, at the boundary of `pprint` (every line indented by its depth) ------------------------------
# `pprint` is refused when weight * (1 + depth) goes over 1,000,000.

PPRINTS = [
    # (template with N, the largest N allowed, what it is given)
    ("{{ [['-' * N]]|pprint|length }}", 333325, {}),                       # 3 * (N + 8)
    ("{{ v|pprint|length }}", 333325, "[['-' * N]]"),                       # the same, given
    ("{{ {'a': [['-' * N]], 'b': 1}|pprint|length }}", 249979, {}),        # 4 * (N + 21)
    ("{{ {(('k',),): '-' * N}|pprint|length }}", 249985, {}),              # 4 * (N + 15)
    ("{{ namespace(x='-' * N)|pprint|length }}", 333313, {}),              # 3 * (N + 20)
    ("{% set ns = namespace(x='-' * N) %}{{ [ns]|pprint|length }}", 249976, {}),  # 4 * (N + 24)
]


def _pprint_case(template, context, n):
    if context == "[['-' * N]]":
        return template, {"v": [["-" * n]]}
    return template.replace("N", str(n)), context


@pytest.mark.parametrize(("template", "largest", "context"), PPRINTS)
def test_pprint_up_to_the_limit_still_renders_and_one_past_is_refused(template, largest, context):
    assert int(rendered(*_pprint_case(template, context, largest))) > largest
    found = refused(*_pprint_case(template, context, largest + 1))
    assert found.message == f"template over a limit: `pprint` of this value makes a text over {MAX_TEXT:,} characters"


# -- weighing is remembered within a render: looking at a big value again costs nothing -----------------

def test_a_big_value_given_looked_at_many_times_still_renders():
    members = tuple(item for i in range(5000) for item in (f"n{i}", i, None, 1.5))
    assert rendered("{% for i in range(1000) %}{% set n = v|length %}{% endfor %}{{ v|length }}",
                    {"v": members}) == "20000"


def test_a_big_list_built_from_one_row_looked_at_many_times_still_renders():
    assert rendered("{% set row = [1] %}{% set big = [row] * 20000 %}"
                    "{% for i in range(1000) %}{% set n = big|length %}{% endfor %}{{ big|length }}") == "20000"


class _Clock:
    """A thread clock the test moves by hand (weighing a value big enough to take 5 s takes too long)."""

    def __init__(self) -> None:
        self.now, self.reads = 0.0, 0

    def thread_time(self) -> float:
        self.reads += 1
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(templates, "time", fake)
    return fake


def _slow_values(clock):
    class SlowDict(dict):
        def __getitem__(self, key):
            if key >= 1500:
                clock.now = 3600.0  # looking at the last entries takes an hour
            return super().__getitem__(key)

    class SlowList(list):
        def __iter__(self):
            for index, item in enumerate(list.__iter__(self)):
                if index >= 1500:
                    clock.now = 3600.0
                yield item

    return {"dict": SlowDict((i, i) for i in range(2048)), "list": SlowList(range(2048))}


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_weighing_a_large_value_stops_when_the_render_runs_out_of_time(clock, kind):
    found = refused("{{ v }}", {"v": _slow_values(clock)[kind]})
    assert found.message == "template over a limit: rendering took longer than 5 s"


@pytest.mark.parametrize("value", [{i: i for i in range(4096)}, list(range(4096))], ids=["dict", "list"])
def test_weighing_a_large_value_reads_the_clock_once_every_1024_items(clock, value):
    assert rendered("{{ v|length }}", {"v": value}) == "4096"
    assert clock.reads <= 10


# -- the output limit, counted by render_source on what is really printed -------------------------------

def test_output_of_exactly_the_limit_still_renders():
    # a variable prints its own text; the sandbox cannot know its length before it prints
    text = rendered("{{ r }}", {"r": Namespace("r", {}, "-" * MAX_TEXT)})
    assert len(text) == MAX_TEXT


def test_output_one_past_the_limit_is_refused():
    found = problem("{{ r }}", {"r": Namespace("r", {}, "-" * (MAX_TEXT + 1))})
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "limit", f"template over a limit: the output is over {MAX_TEXT:,} characters", LIMITS_HINT, None, FILE)


def test_output_over_the_limit_in_several_pieces_is_refused():
    r = Namespace("r", {}, "-" * 600_000)
    found = problem("{{ r }}\n{{ r }}", {"r": r}, label="body")
    assert found.message == f"template over a limit in body: the output is over {MAX_TEXT:,} characters"
    assert rendered("{{ r }}\n{{ r }}", {"r": Namespace("r", {}, "-" * 499_999)}) == "-" * 499_999 + "\n" + "-" * 499_999


# -- each render has its own budget; a render inside a render shares it ---------------------------------

BUILDS_3M = "{% set a = '-' * 1000000 %}{% set b = '-' * 1000000 %}{% set c = '-' * 1000000 %}"


def test_what_a_render_builds_is_counted_to_the_character():
    five = BUILDS_3M + "{% set d = '-' * 1000000 %}{% set e = '-' * 1000000 %}"
    assert rendered(five + "ok") == "ok"
    found = refused(five + "{% set f = '-' * 1 %}ok")
    assert found.message == ("template over a limit: the values this template builds add up to over 5,000,000 "
                             "characters (at the result of *)")


def test_each_render_starts_with_a_fresh_budget():
    assert rendered(BUILDS_3M + "ok") == "ok"
    assert rendered(BUILDS_3M + "ok") == "ok"
    assert rendered("{{ '-' * 1000000 }}") == "-" * MAX_TEXT
    assert rendered("{{ '-' * 1000000 }}") == "-" * MAX_TEXT


def test_the_loop_budget_is_counted_from_zero_in_every_render(monkeypatch):
    # the real limit (100,000 steps) takes half a second to reach: the count is what is tested
    monkeypatch.setattr(templates, "MAX_LOOPS", 10)
    for _ in range(2):
        assert rendered("{% for i in range(10) %}{{ i }}{% endfor %}") == "0123456789"
    assert refused("{% for i in range(11) %}{% endfor %}").message == \
        "template over a limit: the loops ran more than 10 times"


def test_macros_may_nest_50_deep_in_every_render():
    template = "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{% endif %}.{% endmacro %}{{ m(N) }}"
    for _ in range(2):
        assert rendered(template.replace("N", "49")) == "." * 50
    assert refused(template.replace("N", "50")).message == \
        "template over a limit: macros or recursive loops nest more than 50 deep"


def test_a_render_inside_a_render_shares_its_budget():
    inner = Namespace("inner", {}, lambda: rendered(BUILDS_3M + "inner"))
    found = refused(BUILDS_3M + "{{ inner }}", {"inner": inner})
    assert "the values this template builds add up to over 5,000,000 characters" in found.message
    assert rendered("{{ inner }}", {"inner": inner}) == "inner"


# -- what each kind of failure reports ------------------------------------------------------------------

def _recurse():
    return _recurse()


def _out_of_memory():
    raise MemoryError


@pytest.mark.parametrize("text", [_recurse, _out_of_memory], ids=["recursion", "memory"])
def test_a_value_that_recurses_without_end_is_a_limit_with_its_line(text):
    found = problem("title\n\n{{ r }}", {"r": Namespace("r", {}, text)}, line_offset=10, label="body")
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "limit", "template over a limit in body: it recurses or grows without end",
        "check macros that call themselves and loops over their own data", 13, FILE)


def test_a_limit_reports_its_line_and_the_limits():
    found = problem("title\n\n{{ 'x' * 1000001 }}", label="body", line_offset=10)
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "limit", f"template over a limit in body: repeating a value 1,000,001 times goes over {MAX_TEXT:,} characters",
        LIMITS_HINT, 13, FILE)


def test_a_limit_in_a_one_line_string_reports_that_line():
    found = problem("{{ 'x' * 1000001 }}", fixed_line=7)
    assert (found.kind, found.line, found.file) == ("limit", 7, FILE)


@pytest.mark.parametrize(("context", "hint"), [
    ({}, "templates see: ; use {{ name | default('') }} for optional values"),
    ({"release": 1, "groups": 2}, "templates see: groups, release; use {{ name | default('') }} for optional values"),
])
def test_an_undefined_variable_reports_its_name_line_and_what_templates_see(context, hint):
    found = problem("title\n{{ nothing }}", context, label="subject")
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "undefined", "undefined variable in subject: `nothing` is undefined", hint, 2, FILE)


def test_an_undefined_recipient_column_gets_the_recipient_hint():
    found = problem("a\nb\n{{ recipient.company }}", {"recipient": Namespace("recipient", {"name": "Ann"})})
    assert (found.kind, found.message, found.line) == (
        "undefined", "undefined variable: `recipient.company` is undefined (it has: name)", 3)
    assert found.hint == ("recipient has name, email, phone, role and the extra columns of the members CSV; "
                          "add the column or use {{ recipient.x | default('') }}")


@pytest.mark.parametrize(("template", "message"), [
    ("a\n\n{{ ''.__class__ }}", "not allowed in a template in body: `__class__` is not accessible in templates"),
    ("a\n\n{% include 'x' %}",
     "not allowed in a template in body: templates cannot include, import or extend other files ('x')"),
])
def test_a_sandbox_refusal_reports_its_line(template, message):
    found = problem(template, label="body")
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "security", message, "templates are sandboxed: use the variables relcomm provides", 3, FILE)


def test_a_template_error_reports_its_line():
    found = problem("a\n{{ [1]|sum(start=[]) }}", label="body", line_offset=4)
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "error", "template error in body: `sum` adds numbers; to put lists together use `+` or a loop",
        "see docs/plan-format.md, section Templates", 6, FILE)


def test_a_failing_expression_reports_the_python_error_and_its_line():
    found = problem("a\n{{ 1 / 0 }}", label="body", line_offset=4)
    assert (found.kind, found.message, found.hint, found.line, found.file) == (
        "error", "template failed in body: ZeroDivisionError: division by zero",
        "check the expression on that line", 6, FILE)


def test_a_template_with_values_renders_them():
    assert rendered("{{ a }} {{ b|length }}", {"a": "x", "b": [1, 2]}) == "x 2"
