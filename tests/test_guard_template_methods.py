"""Template limits on operators, str/bytes methods, the build budget and the sandbox set-up (issue 15).

Guards what `tests/test_guard_templates.py` leaves open: the exact boundaries of `*`, `**`, `+`, `%`,
`replace`, `translate`, `expandtabs` and the other text methods (allowed at the limit, refused one
past it, with the message the user reads); the budget of all values one render builds (MAX_BUILT);
values the caller passes in (a long notes text, a long list) refused when a template prints, compares
or filters them; and the sandbox's own globals (`range`, `lipsum`, `cycler`, `joiner`), its guarded
subtraction and tests, and its `_` attribute rule. Every test renders in a sandbox made for it.
"""

from __future__ import annotations


import pytest
from sandbox_helpers import fresh_sandbox, refused, rendered  # noqa: F401  (fresh_sandbox: every test renders in a sandbox made for it)

from relcomm_tui.compose import templates
from relcomm_tui.compose.templates import MAX_BUILT, MAX_INT_BITS, MAX_ITEMS, MAX_TEXT, TemplateProblem

def failed(template: str, **context) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as caught:
        rendered(template, **context)
    return caught.value


# -- operators ---------------------------------------------------------------------------------------

def test_plain_arithmetic_still_renders():
    assert rendered("{{ 1 + 2 }}|{{ 7 - 2 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ 2 ** 3 }}|{{ 2 * 3 }}"
                    "|{{ 2.5 * 3 }}|{{ 3 * 4 }}|{{ 2.5 ** 2 }}") == "3|5|3.5|3|1|8|6|7.5|12|6.25"


@pytest.mark.parametrize("template", ["{{ 'x' * 2000000 }}", "{{ 2000000 * 'x' }}"])
def test_repeating_text_over_the_limit_is_refused_naming_the_repetition(template):
    assert refused(template).message.endswith(f"repeating a value 2,000,000 times goes over {MAX_TEXT:,} characters")


def test_repeating_a_list_to_exactly_the_item_limit_still_renders():
    assert rendered(f"{{{{ ([0] * {MAX_ITEMS})|length }}}}") == str(MAX_ITEMS)


def test_repeating_a_given_list_still_renders():
    assert rendered("{{ (rows * 2)|length }}", rows=[1, 2, 3]) == "6"


def test_repeating_a_given_text_once_is_refused_when_the_text_is_over_the_limit():
    problem = refused("{{ notes * 1 }}", notes="x" * (MAX_TEXT + 1))
    assert problem.message.endswith(f"repeating a value 1 times goes over {MAX_TEXT:,} characters")


def test_repeating_a_deeply_nested_value_zero_times_builds_nothing_and_renders():
    deep: list = []
    for _ in range(25):
        deep = [deep]
    assert rendered("{{ deep * 0 }}", deep=deep) == "[]"


@pytest.mark.parametrize(("template", "power"), [("{{ 3 ** 70000 }}", "3 ** 70000"),
                                                 ("{{ 2 ** 60000 }}", "2 ** 60000")])
def test_a_power_over_the_bit_limit_is_refused_before_it_is_computed(template, power):
    assert refused(template).message.endswith(f"{power} is a number over {MAX_INT_BITS:,} bits")


def test_a_power_at_exactly_the_bit_estimate_still_renders():
    # 2 has 2 bits: 2 ** 50000 is estimated at 100,000 bits, the limit
    assert rendered("{{ (2 ** 50000).bit_length() }}") == "50001"


def test_powers_of_one_do_not_grow_and_still_render():
    assert rendered("{{ 1 ** 200000 }}|{{ (-1) ** 200001 }}") == "1|-1"


def test_a_float_power_that_overflows_is_an_error_in_the_expression_not_a_limit():
    problem = failed("{{ 2 ** 1e6 }}")
    assert problem.kind == "error" and "OverflowError" in problem.message


def test_a_product_over_the_bit_limit_is_refused_and_at_the_limit_renders():
    assert rendered("{{ (2 ** 50000 * 2 ** 49999).bit_length() }}") == str(MAX_INT_BITS)
    problem = refused("{{ (2 ** 50000 * 2 ** 50000).bit_length() }}")
    assert problem.message.endswith(f"the result of * is a number over {MAX_INT_BITS:,} bits")


def test_adding_texts_to_exactly_the_limit_still_renders():
    assert rendered("{{ (('x' * 500000) + ('y' * 500000))|length }}") == str(MAX_TEXT)


@pytest.mark.parametrize("template", ["{{ ('x' * 999999) + 'yy' }}", "{{ 'yy' + ('x' * 999999) }}"])
def test_adding_texts_over_the_limit_is_refused_before_it_is_built(template):
    assert refused(template).message.endswith(f"the result of + is over {MAX_TEXT:,} characters")


def test_adding_to_a_given_list_still_renders():
    # two renders: a value weighed once is remembered for the rest of its render
    assert rendered("{{ (rows + [1])|length }}", rows=[1, 2, 3]) == "4"
    assert rendered("{{ ([1] + rows)|length }}", rows=[1, 2, 3]) == "4"


def test_subtracting_large_key_views_is_not_mistaken_for_adding():
    assert rendered("{{ ({'a' * 600000: 1}.keys() - {'b' * 600000: 2}.keys())|length }}") == "1"


def test_subtracting_texts_is_an_error_in_the_expression_not_a_limit():
    problem = failed("{{ ('x' * 600000) - ('y' * 600000) }}")
    assert problem.kind == "error" and "TypeError" in problem.message


def test_subtracting_from_dict_keys_keeps_the_dict_order():
    assert rendered("{{ {'b': 1, 'a': 2, 'c': 3}.keys() - ['c'] }}") == "['b', 'a']"


def test_a_percent_format_repeating_a_long_argument_is_refused_before_it_is_built():
    problem = refused("{{ '%(a)s%(a)s' % {'a': 'x' * 600000} }}")
    assert problem.message.endswith(f"this % format makes a text over {MAX_TEXT:,} characters")


# -- str and bytes methods ---------------------------------------------------------------------------

def test_replace_with_an_empty_old_text_is_allowed_up_to_the_limit():
    # 'ab' with '' replaced: 3 insertions of 300,000 plus the 2 letters
    assert rendered("{{ 'ab'.replace('', 'x' * 300000)|length }}") == "900002"


def test_replace_with_an_empty_old_text_over_the_limit_is_refused_before_it_is_built():
    assert refused("{{ 'ab'.replace('', 'x' * 400000) }}").message.endswith(
        f"this replace makes a text over {MAX_TEXT:,} characters")


def test_replace_with_a_count_is_only_checked_for_that_many_replacements():
    assert rendered("{{ 'ab'.replace('', 'x' * 600000, 0) }}") == "ab"
    assert rendered("{{ 'aaa'.replace('a', 'b', 2) }}") == "bba"


def test_replace_with_a_count_given_by_name_is_not_refused_as_over_a_limit():
    try:
        assert rendered("{{ 'ab'.replace('', 'x' * 600000, count=0) }}") == "ab"  # Python 3.13+
    except TemplateProblem as problem:  # before 3.13 str.replace takes no keywords: Python's own error
        assert problem.kind == "error", problem.message


def test_replace_with_a_same_length_text_never_grows_and_still_renders():
    assert rendered("{{ ('a' * 600000).replace('a', 'b')|length }}") == "600000"


def test_counting_from_a_position_in_a_long_text_still_renders():
    assert rendered("{{ ('a' * 600000).count('a', 100000) }}") == "500000"


def test_endswith_a_tuple_on_a_long_text_still_renders():
    assert rendered("{{ ('x' * 600000).endswith(('a', 'b')) }}") == "False"


def test_text_methods_on_a_given_text_over_the_limit_still_render():
    notes = "x" * (MAX_TEXT + 1)
    assert rendered("{{ notes.startswith('x') }}|{{ 'abc'.upper() }}", notes=notes) == "True|ABC"


def test_bytes_expandtabs_renders_and_is_refused_over_the_limit():
    assert rendered("{{ 'a\\tb'.encode().expandtabs(4) }}") == "b'a   b'"
    assert refused("{{ ('\\t' * 1000).encode().expandtabs(2000) }}").message.endswith(
        f"expandtabs(2,000) goes over {MAX_TEXT:,} characters")


def test_translate_still_renders():
    assert rendered("{{ 'abc'.translate({97: 'A', 98: 66, 99: none}) }}") == "AB"


def test_translate_to_long_texts_is_refused_before_it_is_built():
    assert refused("{{ ('a' * 1000).translate({97: 'x' * 2000}) }}").message.endswith(
        f"this translate makes a text over {MAX_TEXT:,} characters")


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ ('a' * 500000).translate({97: 'bb'})|length }}", str(MAX_TEXT)),  # exactly the limit
    ("{{ ('a' * 600000).translate({97: 66})|length }}", "600000"),          # to a code point: one each
    ("{{ ('a' * 600000).translate({})|length }}", "600000"),                # an empty table
    ("{{ ('a' * 600000).translate('x' * 100)|length }}", "600000"),         # a text as the table
])
def test_translate_within_the_limit_still_renders(template, expected):
    assert rendered(template) == expected


# -- values a template builds, all together (MAX_BUILT) ----------------------------------------------

FIVE_MILLION = "{% set a = 'x' * 1000000 %}" * 5  # MAX_BUILT exactly


def test_building_exactly_the_render_budget_still_renders():
    assert MAX_BUILT == 5_000_000
    assert rendered(FIVE_MILLION + "{{ 1 / 2 }}") == "0.5"  # a number builds no text


@pytest.mark.parametrize(("more", "at"), [("{% set b = 'y' * 1 %}", "the result of *"),
                                          ("{% set b = [1] %}", "a list the template builds")])
def test_building_one_more_than_the_render_budget_is_refused_naming_what(more, at):
    problem = refused(FIVE_MILLION + more)
    assert problem.message.endswith(f"the values this template builds add up to over {MAX_BUILT:,} characters "
                                    f"(at {at})")


def test_new_lists_of_existing_items_cost_their_slots_not_their_text():
    template = "{% set l = ['x' * 900000] %}{% for i in range(6) %}{% set m = l + [] %}{% endfor %}done"
    assert rendered(template) == "done"


def test_reading_a_given_value_many_times_builds_nothing():
    rows, doc = ["x" * 900000], {"body": "x" * 900000}
    assert rendered("{% for i in range(6) %}{{ rows|length }}{% endfor %}", rows=rows) == "111111"
    assert rendered("{% for i in range(6) %}{{ doc['body']|length }},{% endfor %}", doc=doc) == "900000," * 6


def test_a_filter_returning_a_list_still_renders():
    assert rendered("{{ [3, 1, 2]|sort }}") == "[1, 2, 3]"


# -- values the caller gives ---------------------------------------------------------------------------

def test_a_given_text_at_the_limit_prints_and_one_past_it_is_refused():
    assert len(rendered("{{ notes }}", notes="x" * MAX_TEXT)) == MAX_TEXT
    problem = refused("{{ notes }}", notes="x" * (MAX_TEXT + 1))
    assert problem.message.endswith(f"a printed value is {MAX_TEXT + 1:,} characters long (the limit is {MAX_TEXT:,})")


def test_a_given_list_at_the_item_limit_is_allowed_and_one_past_it_is_refused():
    assert rendered("{{ rows|length }}", rows=[0] * MAX_ITEMS) == str(MAX_ITEMS)
    problem = refused("{{ rows|length }}", rows=[0] * (MAX_ITEMS + 1))
    assert problem.message.endswith(f"the value given to `length` has {MAX_ITEMS + 1:,} items (the limit is {MAX_ITEMS:,})")


def test_a_given_list_at_the_text_limit_is_allowed_and_one_past_it_is_refused():
    assert rendered("{{ rows|length }}", rows=["x" * (MAX_TEXT - 4)]) == "1"  # [''] adds 4 characters
    problem = refused("{{ rows|length }}", rows=["x" * (MAX_TEXT - 3)])
    assert problem.message.endswith(f"the value given to `length` is over {MAX_TEXT:,} characters as text")


def test_comparing_and_testing_a_huge_given_list_is_refused_naming_the_step():
    rows = [0] * (MAX_ITEMS + 1)
    assert f"a value compared has {MAX_ITEMS + 1:,} items" in refused("{{ rows == [] }}", rows=rows).message
    assert f"the value given to `sequence` has {MAX_ITEMS + 1:,} items" in \
        refused("{{ rows is sequence }}", rows=rows).message
    assert rendered("{{ 1 < 2 }}") == "True"


def test_a_slice_given_by_the_caller_is_counted_like_a_written_slice():
    # A slice object only reaches the sandbox's getitem from the context: templates write `s[1:3]`,
    # which Jinja compiles to a plain Python slice (guarded by relcomm_slice).
    assert rendered("{{ word[part] }}", word="abcdef", part=slice(1, 3)) == "bc"
    problem = refused("{{ notes[part] }}", notes="x" * (MAX_TEXT + 1), part=slice(None))
    assert problem.message.endswith(f"a slice is {MAX_TEXT + 1:,} characters long (the limit is {MAX_TEXT:,})")


# -- the sandbox's globals and rules -------------------------------------------------------------------

def test_globals_print_without_memory_addresses():
    assert rendered("{{ range }}|{{ lipsum }}|{{ cycler('a', 'b') }}|{{ joiner() }}") == \
        "<function range>|<function lipsum>|<cycler>|<joiner>"


@pytest.mark.parametrize("template", ["{{ {'_secret': 1}._secret }}", "{{ range.__globals__ }}"])
def test_attributes_starting_with_an_underscore_are_not_accessible(template):
    problem = failed(template)
    name = template.split(".")[-1].split()[0]
    assert problem.kind == "security" and f"`{name}` is not accessible in templates" in problem.message


def test_a_render_over_its_time_is_refused_saying_so(monkeypatch):
    # MAX_SECONDS of CPU time is 5 s: a test cannot spend that, so the budget is set to 0 here.
    monkeypatch.setattr(templates, "MAX_SECONDS", 0.0)
    problem = refused("{% for i in range(1000) %}{{ i }}{% endfor %}")
    assert problem.message.endswith("rendering took longer than 0 s")
