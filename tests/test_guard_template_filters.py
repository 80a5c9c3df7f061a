"""Template limits on Jinja's built-in filters (issue 15): `replace`, `join`, `format`, `indent`,
`wordwrap`, `tojson`, `pprint`, `sum`, `center`, `batch`, `slice` and `truncate` can make a result far
bigger than what they are given, so the sandbox refuses them *before* they run (the message names
the filter's own check, not "the result of ..."), and every value given to a filter is weighed.

Each limit is tried at exactly the boundary: allowed at the limit, refused one past it.
"""

from __future__ import annotations


import pytest
from sandbox_helpers import fresh_sandbox, refused, rendered  # noqa: F401  (fresh_sandbox: every test renders in a sandbox made for it)

from relcomm_tui.compose.templates import MAX_BUILT, MAX_TEXT, TemplateProblem

OVER = f"over {MAX_TEXT:,} characters"


# -- every value given to a filter --------------------------------------------------------------------

def test_a_huge_value_given_to_any_filter_is_refused():
    # The data (a notes file, a CSV cell) is not built by the template: the filter is where it is weighed.
    problem = refused("{{ notes|length }}", {"notes": "x" * 2_000_000})
    assert problem.message.endswith(
        f"the value given to `length` is 2,000,000 characters long (the limit is {MAX_TEXT:,})")


def test_values_given_to_filters_are_not_counted_again_as_built():
    # Five texts of MAX_TEXT make exactly MAX_BUILT; reading one through filters builds nothing more.
    sets = "".join(f"{{% set {name} = 'x' * {MAX_TEXT} %}}" for name in "abcde")
    assert 5 * MAX_TEXT == MAX_BUILT
    assert rendered(sets + "{{ a|length }}{{ b|length }}") == f"{MAX_TEXT}{MAX_TEXT}"
    # one more character built is over
    problem = refused(sets + "{% set f = 'x' * 1 %}")
    assert f"add up to over {MAX_BUILT:,} characters" in problem.message


# -- replace ----------------------------------------------------------------------------------------

def test_a_replace_that_grows_the_text_past_the_limit_is_refused_and_at_the_limit_allowed():
    # 1,000 hits, each growing by 999: 1,000 + 999,000 = exactly the limit
    assert rendered("{{ ('x' * 1000)|replace('x', 'y' * 1000)|length }}") == str(MAX_TEXT)
    problem = refused("{{ ('x' * 1000)|replace('x', 'y' * 1001)|length }}")
    assert problem.message.endswith(f"this replace makes a text {OVER}")


def test_a_replace_limited_by_count_still_renders():
    # count=1: one hit only, although 1,000 hits of 2,000 characters would be far over the limit
    assert rendered("{{ ('x' * 1000)|replace('x', 'y' * 2000, 1)|length }}") == "2999"


# -- join -------------------------------------------------------------------------------------------

def test_a_join_with_a_long_separator_is_refused_and_at_the_limit_allowed():
    # 3,937 items of "ab" weigh 15,750 as a list; 3,937 separators of 250 make it 1,000,000 exactly.
    assert rendered("{{ (['ab'] * 3937)|join('x' * 250)|length }}") == str(2 * 3937 + 250 * 3936)
    problem = refused("{{ (['ab'] * 3937)|join('x' * 251)|length }}")
    assert problem.message.endswith(f"joining these makes a text {OVER}")


def test_a_join_without_a_separator_counts_no_separator():
    # the list weighs 980,002 as text: allowed, even though 4 characters per item more would not be
    assert rendered("{{ (['x' * 96] * 10000)|join|length }}") == "960000"


# -- format -----------------------------------------------------------------------------------------

def test_a_format_width_over_the_limit_is_refused():
    problem = refused("{{ '%1000001s'|format('x') }}")
    assert problem.message.endswith(f"a format width of 1,000,001 is over the limit of {MAX_TEXT:,}")


def test_a_format_star_width_taken_from_the_arguments_is_refused():
    problem = refused("{{ '%*s'|format(1000000, 'x') }}")
    assert problem.message.endswith(f"this % format makes a text {OVER}")


def test_a_format_repr_of_a_long_text_is_refused():
    # %r may escape every character: 100,005 characters of argument may print as ten times that
    problem = refused("{% set s = 'x' * 100001 %}{{ '%r'|format(s)|length }}")
    assert problem.message.endswith(f"this % format makes a text {OVER}")
    assert rendered("{% set s = 'x' * 99990 %}{{ '%r'|format(s)|length }}") == "99992"


def test_a_format_naming_one_argument_many_times_is_refused():
    problem = refused("{% set s = 'x' * 600000 %}{{ '%(a)s%(a)s'|format(a=s)|length }}")
    assert problem.message.endswith(f"this % format makes a text {OVER}")


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ '100%%'|format }}", "100%"),
    ("{{ '%s-%s'|format('a', 1) }}", "a-1"),
    ("{{ '%(a)s/%(b)s'|format(a='x', b='y') }}", "x/y"),
])
def test_a_small_format_still_renders(template, expected):
    assert rendered(template) == expected


# -- indent -----------------------------------------------------------------------------------------

def test_indenting_many_lines_by_a_wide_width_is_refused_and_at_the_limit_allowed():
    # 1,000 lines x 1,000 = exactly the limit (blank lines are not indented: the text stays short)
    assert rendered("{{ ('\n' * 999)|indent(1000)|length }}") == "999"
    problem = refused("{{ ('\n' * 999)|indent(1001)|length }}")
    assert problem.message.endswith(f"indenting by this much goes over {MAX_TEXT:,} characters")


def test_indenting_by_a_long_text_is_refused():
    problem = refused("{{ ('\n' * 999)|indent('x' * 1001)|length }}")
    assert problem.message.endswith(f"indenting by this much goes over {MAX_TEXT:,} characters")
    assert rendered("{{ ('\n' * 999)|indent('x' * 1000)|length }}") == "999"


def test_indenting_by_the_default_four_spaces_is_counted():
    # 250,000 lines x 4 = exactly the limit
    assert rendered("{{ ('\n' * 249999)|indent|length }}") == "249999"
    problem = refused("{{ ('\n' * 250000)|indent|length }}")
    assert problem.message.endswith(f"indenting by this much goes over {MAX_TEXT:,} characters")


def test_a_small_indent_still_renders():
    assert rendered("{{ 'a\nb'|indent(2) }}") == "a\n  b"


# -- wordwrap ---------------------------------------------------------------------------------------

def test_a_wordwrap_with_a_long_wrapstring_is_refused():
    # 1,000 characters, width 1: 1,001 wraps estimated, of 1,000 characters each
    problem = refused("{{ ('x' * 1000)|wordwrap(1, wrapstring='y' * 1000)|length }}")
    assert problem.message.endswith(f"this wordwrap makes a text {OVER}")


def test_a_wordwrap_at_exactly_the_limit_is_allowed():
    # 200 characters, width 200: 2 wraps of 499,900 + 200 = exactly the limit
    assert rendered("{{ ('x' * 200)|wordwrap(200, wrapstring='y' * 499900)|length }}") == "200"
    # 4 characters, width 3: 4 // 3 + 1 = 2 wraps of 499,998 + 4 = exactly the limit
    assert rendered("{{ 'xxxx'|wordwrap(3, wrapstring='y' * 499998)|length }}") == "500002"


def test_a_wordwrap_with_the_default_newline_is_counted_as_one_character():
    # 999,996 + 2 newlines: under the limit
    assert rendered("{{ ('x' * 999996)|wordwrap(999996)|length }}") == "999996"


def test_a_wordwrap_with_the_default_width_of_79_is_counted():
    # 158 characters at width 79: 3 wraps of 333,280 + 158 = 999,998
    assert rendered("{{ ('x' * 158)|wordwrap(wrapstring='y' * 333280)|length }}") == str(158 + 333280)
    # 6,320 characters at width 79: 81 wraps of 12,400 + 6,320 = 1,010,720
    problem = refused("{{ ('x' * 6320)|wordwrap(wrapstring='y' * 12400)|length }}")
    assert problem.message.endswith(f"this wordwrap makes a text {OVER}")


def test_a_small_wordwrap_still_renders():
    assert rendered("{{ 'aaa bbb'|wordwrap(3) }}") == "aaa\nbbb"


# -- tojson and pprint ------------------------------------------------------------------------------

def test_tojson_of_a_deep_value_with_a_wide_indent_is_refused_and_at_the_limit_allowed():
    # [[['x' * 1000]]] weighs 1,012 and is 3 deep: 1,012 * (1 + 3 * 400) is over the limit
    problem = refused("{{ [[['x' * 1000]]]|tojson(indent=400)|length }}")
    assert problem.message.endswith(f"`tojson` of this value makes a text {OVER}")
    # ['x' * 996] weighs 1,000 and is 1 deep: 1,000 * (1 + 999) = exactly the limit
    assert rendered("{{ ['x' * 996]|tojson(indent=999)|length }}") == "2001"


def test_tojson_with_a_long_text_as_indent_is_refused():
    problem = refused("{{ [[['x' * 1000]]]|tojson(indent=' ' * 400)|length }}")
    assert problem.message.endswith(f"`tojson` of this value makes a text {OVER}")


def test_tojson_with_an_indent_over_the_limit_is_refused_even_for_a_number():
    assert rendered(f"{{{{ 1|tojson(indent={MAX_TEXT}) }}}}") == "1"
    problem = refused(f"{{{{ 1|tojson(indent={MAX_TEXT + 1}) }}}}")
    assert problem.message.endswith(f"`tojson` of this value makes a text {OVER}")


def test_pprint_counts_one_character_of_indent_per_level():
    # ['x' * 499996] weighs 500,000 and is 1 deep: 500,000 * (1 + 1) = exactly the limit
    assert rendered("{{ ['x' * 499996]|pprint|length }}") == "500000"
    problem = refused("{{ ['x' * 600000]|pprint|length }}")
    assert problem.message.endswith(f"`pprint` of this value makes a text {OVER}")


def test_a_small_tojson_and_pprint_still_render():
    assert rendered("{{ {'a': [1]}|tojson }} {{ [1, 'b']|pprint }}") == '{"a": [1]} [1, \'b\']'


# -- sum --------------------------------------------------------------------------------------------

def test_a_sum_of_numbers_still_renders():
    assert rendered("{{ [1, 2.5]|sum }} {{ [1, 2]|sum(start=10) }}") == "3.5 13"


def test_a_sum_that_puts_lists_together_is_refused_with_advice():
    problem = refused("{{ [[1], [2]]|sum(start=[]) }}", kind="error")
    assert problem.message == "template error: `sum` adds numbers; to put lists together use `+` or a loop"


# -- center, batch, slice, truncate -----------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    (f"{{{{ 'x'|center({MAX_TEXT})|length }}}}", str(MAX_TEXT)),
    (f"{{{{ [1]|batch({MAX_TEXT}) }}}}", "<generator>"),
    (f"{{{{ [1]|slice({MAX_TEXT}) }}}}", "<generator>"),
    (f"{{{{ 'x'|truncate({MAX_TEXT}) }}}}", "x"),
    ("{{ 'ab'|center(6) }}|{{ [1, 2, 3]|batch(2)|list }}|{{ 'abcdefghij'|truncate(7, leeway=0) }}",
     "  ab  |[[1, 2], [3]]|abcd..."),
])
def test_a_width_or_count_at_the_limit_is_allowed(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize(("template", "prefix"), [
    (f"{{{{ 'x'|center({MAX_TEXT + 1}) }}}}", "center(width="),
    (f"{{{{ [1]|batch({MAX_TEXT + 1}) }}}}", "batch(linecount="),
    (f"{{{{ [1]|slice({MAX_TEXT + 1}) }}}}", "slice("),
    (f"{{{{ 'x'|truncate({MAX_TEXT + 1}) }}}}", "truncate(length="),
])
def test_a_width_or_count_over_the_limit_is_refused(template, prefix):
    problem = refused(template)
    assert problem.message.endswith(f"1,000,001) is over the limit of {MAX_TEXT:,}")
    assert f": {prefix}" in problem.message


def test_a_big_number_as_the_value_itself_is_not_taken_for_a_width():
    assert rendered("{{ (10**7)|center(9) }}") == " 10000000"
