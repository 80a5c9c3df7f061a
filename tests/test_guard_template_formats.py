"""Template limits on formatting (issue 15): `text % args`, the `format` filter, `str.format` and
`str.format_map`, and the sandbox's calls (str methods, macros, recursive loops).

A format may print far more than its arguments (`'%*s' % (10**9, 'x')`, `'{:>1000000000}'.format('')`):
the sandbox bounds the result from the widths and the arguments and refuses it before Python builds
it. These tests put the bounds exactly at the limit (allowed) and one past it (refused, with the
message the user reads), and check that ordinary formatting still renders exactly as in Jinja.

The arithmetic in the comments: a text weighs its length; a number about a third of its bits + 1
(7 for numbers near a million); a tuple or list 2 + each item + 2; a dict 2 + each key and value + 4.
"""

from __future__ import annotations


import pytest
from sandbox_helpers import fresh_sandbox, refused, rendered  # noqa: F401  (fresh_sandbox: every test renders in a sandbox made for it)

from relcomm_tui.compose.templates import MAX_DEPTH, MAX_TEXT, TemplateProblem


PERCENT_TOO_BIG = f"this % format makes a text over {MAX_TEXT:,} characters"


def failed(template: str) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as caught:
        rendered(template)
    assert caught.value.kind == "error", caught.value.message
    return caught.value


# -- text % args --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ '%5s|' % 'x' }}", "    x|"),
    ("{{ '%d' % 42 }}", "42"),
    ("{{ '%5s|%-3d|%.2f' % ('ab', 7, 1.5) }}", "   ab|7  |1.50"),
    ("{{ '%-*s|' % (3, 'x') }}", "x  |"),
    ("{{ '%.*s|' % (2, 'xyz') }}", "xy|"),
    ("{{ '100%% %s' % 'sure' }}", "100% sure"),
    ("{{ '%(a)s-%(a)s' % {'a': 'x'} }}", "x-x"),
    ("{{ '%r' % 'x' }}", "'x'"),
    ("{{ '%.0000001s|' % 'xy' }}", "x|"),  # seven digits are a width like any other
    ("{{ '%0000001s|' % 'xy' }}", "xy|"),  # leading zeros are the zero-padding flag
    ("{{ 'no fields' % () }}", "no fields"),
    # a namespace can change after it is weighed, so the arguments holding it are weighed afresh
    ("{% set ns = namespace(a=1) %}{{ '%s|%s' % (ns, 2) }}", "<Namespace {'a': 1}>|2"),
])
def test_percent_formats_within_the_limits_still_render(template, expected):
    assert rendered(template) == expected


# '%%%999989s' % 'x': 10 characters of text + a width of 999,989 + 1 for 'x' = exactly the limit.
# (the `%%` before it prints a % sign: it is no field and must not end the count of the fields after it)
def test_a_percent_width_exactly_at_the_limit_still_renders():
    assert rendered("{{ ('%%%999989s' % 'x')|length }}") == "999990"


def test_a_percent_width_one_past_the_limit_is_refused():
    assert PERCENT_TOO_BIG in refused("{{ '%%%999990s' % 'x' }}").message


# '%*s' % (n, 'x'): 3 + n + the tuple (2 + 7+2 + 1+2 = 14): the limit is at n = 999,983.
def test_a_star_width_exactly_at_the_limit_still_renders():
    assert rendered("{{ ('%*s' % (999983, 'x'))|length }}") == "999983"


def test_a_star_width_one_past_the_limit_is_refused():
    assert PERCENT_TOO_BIG in refused("{{ '%*s' % (999984, 'x') }}").message


def test_a_huge_star_width_is_refused_before_it_is_built():
    assert PERCENT_TOO_BIG in refused("{{ '%*s' % (10**9, 'x') }}").message


# '%2s%*s%3s' % ('a', n, 'b', 'c'): 9 + (2 + n + 3) + the tuple (2 + 3 + 9 + 3 + 3 = 20): all widths add up.
def test_several_widths_add_up_exactly_to_the_limit_still_render():
    assert rendered("{{ ('%2s%*s%3s' % ('a', 999966, 'b', 'c'))|length }}") == "999971"


def test_several_widths_adding_up_to_one_past_the_limit_are_refused():
    assert PERCENT_TOO_BIG in refused("{{ '%2s%*s%3s' % ('a', 999967, 'b', 'c') }}").message


# '%s' % text: 2 + the text's length.
def test_a_long_argument_exactly_at_the_limit_still_renders():
    assert rendered("{{ ('%s' % ('x' * 999998))|length }}") == "999998"


def test_a_long_argument_one_past_the_limit_is_refused():
    assert PERCENT_TOO_BIG in refused("{{ '%s' % ('x' * 999999) }}").message


@pytest.mark.parametrize("width", ["1000001", "10000000", "999999999999"])
def test_a_percent_width_over_the_limit_is_refused_with_its_value(width):
    number = f"{int(width):,}"
    assert f"a format width of {number} is over the limit of {MAX_TEXT:,}" in refused(
        "{{ '%" + width + "s' % 'x' }}").message


def test_a_percent_width_of_exactly_the_limit_is_refused_for_the_text_around_it():
    # the width alone is allowed; with the text and the argument the result would be over the limit
    message = refused("{{ '%1000000s' % 'x' }}").message
    assert PERCENT_TOO_BIG in message and "a format width" not in message


def test_a_percent_precision_with_more_than_seven_digits_is_refused():
    # (more digits than the limit has: refused without reading them, whatever their value)
    assert f"is over the limit of {MAX_TEXT:,}" in refused("{{ '%.00000001s' % 'xy' }}").message


# %r and %a escape: repr() of a text can be ten times longer, so the argument counts ten times.
@pytest.mark.parametrize("conversion", ["r", "a"])
def test_an_escaping_format_of_a_text_ten_times_under_the_limit_still_renders(conversion):
    # 2 + 10 * 99,999 = 999,992
    template = "{% set s = 'x' * 99999 %}{{ ('%" + conversion + "' % s)|length }}"
    assert rendered(template) == "100001"


@pytest.mark.parametrize("conversion", ["r", "a"])
def test_an_escaping_format_of_a_text_over_a_tenth_of_the_limit_is_refused(conversion):
    template = "{% set s = 'x' * 100000 %}{{ '%" + conversion + "' % s }}"
    assert PERCENT_TOO_BIG in refused(template).message


# With a dict, `%(a)s` may print the same value many times: every field counts the whole dict
# (2 + 1 + 600,000 + 4 = 600,007).
def test_one_named_field_counts_the_dict_once_and_still_renders():
    template = "{% set a = 'x' * 600000 %}{{ ('%(a)s%%' % {'a': a})|length }}"
    assert rendered(template) == "600001"


def test_two_named_fields_count_the_dict_twice_and_are_refused():
    template = "{% set a = 'x' * 600000 %}{{ '%(a)s%(a)s' % {'a': a} }}"
    assert PERCENT_TOO_BIG in refused(template).message


def test_a_percent_format_short_of_arguments_fails_with_pythons_message():
    # 999,998 characters of text + () (2): at the limit, so not refused; Python then says what is wrong
    problem = failed("{{ ('x' * 999995 ~ '%*s') % () }}")
    assert "not enough arguments for format string" in problem.message


def test_a_bytes_format_from_the_data_is_checked_too():
    problem = refused("{{ template % value }}", {"template": b"%1000001s", "value": b"x"})
    assert f"a format width of 1,000,001 is over the limit of {MAX_TEXT:,}" in problem.message


def test_a_bytes_format_from_the_data_still_renders():
    assert rendered("{{ template % value }}", {"template": b"%3s|\xe9", "value": b"x"}) == "b'  x|\\xe9'"


# -- the format filter ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ '%d items'|format(3) }}", "3 items"),
    ("{{ '%(a)s and %(b)s'|format(a='x', b='y') }}", "x and y"),
    ("{{ ('%*s'|format(999983, 'x'))|length }}", "999983"),
])
def test_the_format_filter_within_the_limits_still_renders(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize("template", [
    "{{ '%*s'|format(999984, 'x') }}", "{% set a = 'x' * 600000 %}{{ '%(a)s%(a)s'|format(a=a) }}",
])
def test_the_format_filter_over_the_limit_is_refused(template):
    assert PERCENT_TOO_BIG in refused(template).message


# -- str.format and str.format_map ----------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ '{:>5}|'.format('x') }}", "    x|"),
    ("{{ '{}-{}'.format('a', 'b') }}", "a-b"),
    ("{{ '{a}'.format(a=1) }}", "1"),
    ("{{ '{0[1]}'.format(['a', 'b']) }}", "b"),
    ("{{ '{:>{w}}|'.format('x', w=3) }}", "  x|"),
    ("{{ '{:>0000001}|'.format('xy') }}", "xy|"),  # seven digits: a width like any other
    ("{{ '{a}/{b}'.format_map({'a': 1, 'b': 2}) }}", "1/2"),
    ("{{ 'abc'.upper() }}", "ABC"),  # other str methods are not formats
    ("{{ 'x'.format }}", "<function format>"),
])
def test_str_format_within_the_limits_still_renders(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize("template", [
    "{{ '{:>1000001}'.format('x') }}", "{{ '{:>{w}}'.format('x', w=1000001) }}",
    "{{ '{a:>1000001}'.format_map({'a': 'x'}) }}", "{{ '{:.1000001}'.format('x') }}",
])
def test_a_str_format_width_over_the_limit_is_refused(template):
    assert f"a format width of 1000001 is over the limit of {MAX_TEXT:,}" in refused(template).message


def test_a_str_format_width_with_more_than_seven_digits_is_refused():
    assert f"a format width of 00000001 is over the limit of {MAX_TEXT:,}" in refused(
        "{{ '{:>00000001}'.format('x') }}").message


def test_a_str_format_width_of_exactly_the_limit_still_renders():
    assert rendered("{{ '{:>1000000}'.format('')|length }}") == str(MAX_TEXT)


def test_fields_exactly_at_the_limit_still_render():
    # a field with no width counts its value only: 1,000,000 + 0 (an empty text)
    assert rendered("{% set s = 'x' * 1000000 %}{{ '{}{}'.format(s, '')|length }}") == str(MAX_TEXT)


def test_a_formatted_text_over_the_limit_is_refused():
    # the fields are within the limit (999,999); the text around them tips the result over it
    problem = refused("{{ 'yy{}'.format('x' * 999999) }}")
    assert f"a formatted text is 1,000,001 characters long (the limit is {MAX_TEXT:,})" in problem.message


def test_format_map_with_two_arguments_fails_with_pythons_message():
    problem = failed("{{ '{a}'.format_map({'a': 1}, 2) }}")
    assert problem.message.endswith("TypeError: format_map() takes exactly one argument")


# -- calls: str methods, macros, recursive loops ------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ 'ab'.center(6) }}|", "  ab  |"),
    ("{{ 'a\tb'.expandtabs(4) }}", "a   b"),
    ("{{ range(3)|list }}", "[0, 1, 2]"),
    ("{% macro greet(name, punct='.') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann', punct='!') }}",
     "Hi Ann!"),
])
def test_calls_within_the_limits_still_render(template, expected):
    assert rendered(template) == expected


def test_a_str_method_to_a_huge_width_is_refused_before_it_is_built():
    assert f"center() to a width over {MAX_TEXT:,}" in refused("{{ 'x'.center(1000001) }}").message


def test_a_call_whose_result_is_over_the_limit_is_refused_with_what_it_was():
    # upper() of 'ß' is 'SS': 500,001 characters become 1,000,002
    problem = refused("{{ ('ß' * 500001).upper() }}")
    assert f"the result of a call is 1,000,002 characters long (the limit is {MAX_TEXT:,})" in problem.message


def test_calling_something_that_is_not_a_function_fails_with_pythons_message():
    assert failed("{{ {}() }}").message.endswith("TypeError: 'dict' object is not callable")


def test_comparing_a_long_text_several_times_still_renders():
    # a comparison only looks at its values: it builds nothing, so it counts nothing to the budget
    # of what a render builds (5,000,000 characters)
    template = "{% set s = 'x' * 1000000 %}{% if s == s and s == s and s == s %}same{% endif %}"
    assert rendered(template) == "same"


NEST = "{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{% endif %}.{% endmacro %}"


def test_macros_nested_exactly_to_the_limit_still_render():
    assert rendered(NEST + "{{ m(" + str(MAX_DEPTH - 1) + ")|length }}") == str(MAX_DEPTH)


def test_macros_nested_one_past_the_limit_are_refused():
    problem = refused(NEST + "{{ m(" + str(MAX_DEPTH) + ") }}")
    assert f"macros or recursive loops nest more than {MAX_DEPTH} deep" in problem.message


def test_macros_nested_to_the_limit_twice_in_a_row_still_render():
    # the nesting counts back down as each call returns
    twice = NEST + "{% for i in range(3) %}{{ m(" + str(MAX_DEPTH - 1) + ")|length }},{% endfor %}"
    assert rendered(twice) == f"{MAX_DEPTH},{MAX_DEPTH},{MAX_DEPTH},"


def test_a_macro_called_before_does_not_allow_deeper_nesting_after():
    problem = refused(NEST + "{{ m(0) }}{{ m(1) }}{{ m(" + str(MAX_DEPTH) + ") }}")
    assert f"nest more than {MAX_DEPTH} deep" in problem.message


TREE = "{% set tree = [{'n': 1, 'c': [{'n': 2, 'c': [{'n': 3, 'c': []}]}]}] %}"


def test_a_recursive_loop_still_renders():
    template = TREE + "{% for item in tree recursive %}{{ item.n }}{% if item.c %}({{ loop(item.c) }}){% endif %}" \
                      "{% endfor %}"
    assert rendered(template) == "1(2(3))"


def test_a_recursive_loop_given_an_extra_argument_fails_with_pythons_message():
    template = TREE + "{% for item in tree recursive %}{% if item.c %}{{ loop(item.c, 1) }}{% endif %}{% endfor %}"
    assert "takes 2 positional arguments but 3 were given" in failed(template).message



# -- the other operators the sandbox checks (*, **, +) -------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ [1] + [2] }}|{{ 7 - 2 }}|{{ 7 // 2 }}|{{ 7 / 2 }}|{{ 7 % 3 }}|{{ 2 ** 10 }}|{{ 'ab' * 2 }}",
     "[1, 2]|5|3|3.5|1|1024|abab"),
    ("{{ (('x' * 500000) + ('x' * 500000))|length }}", str(MAX_TEXT)),  # + exactly at the limit
    # lists holding a namespace are weighed afresh each time (the namespace can change)
    ("{% set ns = namespace(a=1) %}{{ ([ns] + [ns])|length }}", "2"),
])
def test_operators_within_the_limits_still_render(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{ 'ab' * 500001 }}", f"repeating a value 500,001 times goes over {MAX_TEXT:,} characters"),
    ("{{ 2 ** 100001 }}", "2 ** 100001 is a number over 100,000 bits"),
    ("{{ ('x' * 500000) + ('x' * 500001) }}", f"the result of + is over {MAX_TEXT:,} characters"),
    # no check before: the product is refused once made (it is small: 25 KB)
    ("{% set n = 2 ** 50000 %}{{ n * n }}", "the result of * is a number over 100,000 bits"),
])
def test_operators_over_the_limits_are_refused_with_what_went_over(template, message):
    assert message in refused(template).message


def test_subtracting_long_texts_fails_with_pythons_message():
    # only + joins texts: - of two texts is Python's error, however long they are
    problem = failed("{% set s = 'x' * 600000 %}{{ s - s }}")
    assert "unsupported operand type(s) for -: 'str' and 'str'" in problem.message


def test_adding_lists_of_long_texts_counts_only_the_new_lists():
    # each l + l is a new list of two slots holding the same text: 8 of them are well within the
    # budget of what a render builds (5,000,000 characters), though each prints as 800,006
    template = "{% set l = ['x' * 400000] %}{% for i in range(8) %}{{ (l + l)|length }}{% endfor %}"
    assert rendered(template) == "22222222"
