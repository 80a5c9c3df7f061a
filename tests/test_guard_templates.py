"""Template limits in both operand orders (issue 15): `n * text` must be refused before Python builds
the text, exactly like `text * n` (before, only `text * n` was checked and `{{ 10**8 * 'x' }}` cost
95 MiB before the size check after the fact refused it).

Each case asserts the refusal *before* allocation (its message names the repetition, not "the
result of *") and a small peak of traced memory. Seen to fail by hand with `_check_repeat` looking
at (left, right) only, and with the list-items branch removed.
"""

from __future__ import annotations


import pytest
from sandbox_helpers import fresh_sandbox, refused, rendered  # noqa: F401  (fresh_sandbox: every test renders in a sandbox made for it)

from relcomm_tui.compose.templates import MAX_INT_BITS, MAX_ITEMS, MAX_TEXT, TemplateProblem

@pytest.mark.parametrize("template", [
    "{{ 'x' * 10**8 }}", "{{ 10**8 * 'x' }}", "{{ [1] * 10**7 }}", "{{ 10**7 * [1] }}",
    "{{ 'ab' * 10**9 }}", "{{ 10**9 * 'ab' }}",
    "{% set n = 10**8 %}{{ n * 'x' }}", "{% set n = 10**8 %}{{ 'x' * n }}",
])
def test_repeating_text_is_refused_before_it_is_built_in_either_order(template):
    problem = refused(template)
    assert "repeating a value" in problem.message and f"{MAX_TEXT:,} characters" in problem.message


@pytest.mark.parametrize("template", [
    # small items, many of them: under the text limit, over the item limit
    "{{ [''] * 200000 }}", "{{ 200000 * [''] }}",
    "{{ ('',) * 200000 }}", "{{ 200000 * ('',) }}",
])
def test_repeating_a_list_is_refused_before_it_is_built_in_either_order(template):
    problem = refused(template)
    assert "repeating a list" in problem.message and f"{MAX_ITEMS:,} items" in problem.message


# (Jinja's ** groups from the left: `10 ** 10**6` is (10**10)**6)
@pytest.mark.parametrize("template", ["{{ 10 ** 1000000 }}", "{% set n = 10**6 %}{{ 2 ** n }}"])
def test_a_huge_power_is_refused_before_it_is_computed(template):
    problem = refused(template)
    assert f"over {MAX_INT_BITS:,} bits" in problem.message


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ 'ab' * 3 }}", "ababab"), ("{{ 3 * 'ab' }}", "ababab"), ("{{ [1] * 2 }}", "[1, 1]"),
    ("{{ 2 * [1] }}", "[1, 1]"), ("{{ 'x' * 0 }}|{{ -1 * 'x' }}", "|"), ("{{ 2 ** 10 }}", "1024"),
    ("{{ ('x' * " + str(MAX_TEXT) + ") | length }}", str(MAX_TEXT)),
    ("{{ (" + str(MAX_TEXT) + " * 'x') | length }}", str(MAX_TEXT)),
])
def test_repeating_within_the_limits_still_renders(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize("template", [
    # a long separator between many small items (the filter and the str method)
    # (a thousand items: a mutation run's instrumented code must stay inside the 5 s render budget)
    "{{ range(1000)|list|join('x' * 1100) }}", "{{ ('y' * 1100).join(range(1000)|map('string')|list) }}",
    # a few long items and a separator that tips them over
    "{% set s = 'x' * 300000 %}{{ [s, s, s]|join('y' * 40000) }}",
    "{% set s = 'x' * 300000 %}{{ ('y' * 40000).join([s, s, s]) }}",
])
def test_a_join_is_refused_before_it_is_built(template):
    problem = refused(template)
    assert problem.message.endswith(f"joining these makes a text over {MAX_TEXT:,} characters")


def test_a_join_at_exactly_the_limit_is_allowed():
    # 3,937 items of "ab" weigh 15,750 as a list; 3,937 separators of 250 make it 1,000,000 exactly.
    text = rendered("{{ (['ab'] * 3937)|join('x' * 250) }}")
    assert len(text) == 2 * 3937 + 250 * 3936
    refused("{{ (['ab'] * 3937)|join('x' * 251) }}")


@pytest.mark.parametrize(("template", "expected"), [
    ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),        # the loop budget's hook
    ("{{ 'a' ~ 'b' }}", "ab"),                                      # concatenation
    ("{{ [1, 2, 3][0:2] }}", "[1, 2]"),                             # slices and list literals
    ("{{ 7 - 2 }}", "5"),                                           # the guarded subtraction
    ("{% set c = cycler(1, 2) %}{{ c.next() }}{{ c.next() }}{{ c.next() }}", "121"),
    ("{% set j = joiner('|') %}{{ j() }}a{{ j() }}b", "a|b"),
    ("{{ 'abc'|length }} {{ 'abc' is string }}", "3 True"),        # filters and tests, guarded
])
def test_the_sandbox_keeps_what_templates_use_working(template, expected):
    assert rendered(template) == expected


def test_the_sandbox_has_no_random_and_a_bounded_lipsum():
    with pytest.raises(TemplateProblem) as caught:  # it would render one text when validating, another when sending
        rendered("{{ [1, 2]|random }}")
    assert "No filter named 'random'" in caught.value.message
    assert "lipsum() is limited to 100 paragraphs" in refused("{{ lipsum(100000) }}").message


@pytest.mark.parametrize("method", ["center", "ljust", "rjust", "zfill"])
def test_padding_to_a_huge_width_is_refused_and_to_the_limit_allowed(method):
    assert refused(f"{{{{ 'x'.{method}(10**7) }}}}").message.endswith(f"{method}() to a width over {MAX_TEXT:,}")
    text = rendered(f"{{{{ 'x'.{method}({MAX_TEXT})|length }}}}")
    assert text == str(MAX_TEXT)


def test_expandtabs_is_refused_over_the_limit_and_allowed_up_to_it():
    # the check counts each tab at the full tab size plus the text's length: 1,000 tabs of 999 is 1,000,000
    assert rendered("{{ ('\\t' * 1000).expandtabs(999)|length }}") == "999000"
    assert rendered("{{ ('\\t' * 111111).expandtabs()|length }}") == "888888"  # size 8
    assert refused("{{ ('\\t' * 999).expandtabs(1001) }}").message.endswith(
        f"expandtabs(1,001) goes over {MAX_TEXT:,} characters")


def test_str_replace_is_refused_before_it_is_built_and_allowed_up_to_the_limit():
    assert refused("{{ ('a' * 10000).replace('a', 'b' * 1000) }}").message.endswith(
        f"this replace makes a text over {MAX_TEXT:,} characters")
    assert rendered("{{ ('a' * 1000).replace('a', 'b' * 1000)|length }}") == "1000000"


def test_a_template_of_exactly_the_most_tags_compiles_and_one_more_is_refused():
    from relcomm_tui.compose.templates import MAX_NODES

    # one output node holding one constant per `{{ 1 }}`: MAX_NODES nodes in all, the most allowed
    assert rendered("{{ 1 }}" * (MAX_NODES - 1)) == "1" * (MAX_NODES - 1)
    problem = refused("{{ 1 }}" * MAX_NODES)
    assert problem.message == (f"template too large: the template has {MAX_NODES + 1:,} tags, variables and operators "
                               f"(the limit is {MAX_NODES:,}); compiling it would take too long")
