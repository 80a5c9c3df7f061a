"""Jinja2 templating for communiques: sandboxed, strict, bounded, with errors that point at a line.

A template is compiled once per source text (the text comes from the plan's snapshot, never the
disk). Every render starts from a fresh context and a fresh budget; the compiled templates and
every value they can reach are immutable, so no render can leave anything behind for the next:
recipient k renders the same text whether or not recipients 1..k-1 were rendered before.

Why one long module: the sandbox, the budget and the limits are one defence; every rule that
keeps a hostile template cheap and stateless is read here together, so none is missed when
another changes.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import random
import re
import sys
import threading
import time
import types
from collections.abc import Iterator, MappingView
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.constants import LOREM_IPSUM_WORDS
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import BlockReference, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, _PassArg, missing
from jinja2.utils import Namespace as JinjaNamespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered; `compose.render` turns it into a RenderError."""

    def __init__(self, message: str, *, file: str | None, line: int | None, hint: str, kind: str) -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.hint, self.kind = message, file, line, hint, kind


class Namespace:
    """A template variable such as `recipient`: values by attribute or key, and its own name for errors.

    Not a dict subclass, so a CSV column called `items` or `values` is not hidden by a dict method.
    It has no public attributes: the sandbox's attribute lookup fails at once and falls back to
    `[key]`, which skips the (slow) safety check; that is what makes 10,000 renders quick.
    """

    __slots__ = ("_relcomm_name", "_values", "_text")

    def __init__(self, name: str, values: Mapping[str, Any], text: str | Callable[[], str] = "") -> None:
        self._relcomm_name = name
        self._values = MappingProxyType(dict(values))  # read-only: nothing a render does can change it
        self._text = text

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __str__(self) -> str:
        return self._text if isinstance(self._text, str) else self._text()

    def __repr__(self) -> str:
        return f"<{self._relcomm_name}>"


# Methods that change a list, dict or set in place. The immutable sandbox refuses them; on a tuple
# (`groups`) they do not exist. Either way the template is told it cannot change values.
_MUTATORS = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "reverse", "sort", "update",
                       "setdefault", "popitem", "add", "discard", "difference_update", "intersection_update",
                       "symmetric_difference_update", "__setitem__", "__delitem__"})


class _Undefined(StrictUndefined):
    """StrictUndefined that names the variable the way the template wrote it (`recipient.company`)."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        owner = self._undefined_obj
        name = self._undefined_name
        if name in _MUTATORS and owner is not missing and not isinstance(owner, Namespace):
            raise SecurityError(f"templates cannot change a value (`{name}`): build a new one instead "
                                "(`items + [x]`, or namespace() for a counter)")
        if self._undefined_exception is SecurityError:
            # The sandbox refused an attribute (`__class__`, `__globals__`, ...): say so, not "undefined".
            raise SecurityError(f"`{name}` is not accessible in templates")
        if isinstance(owner, Namespace):
            known = sorted(owner)
            close = difflib.get_close_matches(str(name), known, n=1)
            guess = f"did you mean `{owner._relcomm_name}.{close[0]}`? " if close else ""
            raise UndefinedError(f"`{owner._relcomm_name}.{name}` is undefined ({guess}it has: {', '.join(known)})")
        if name is not None and owner is not missing:
            kind = {"_Bound": "a function", "_Lazy": "a generator"}.get(type(owner).__name__, type(owner).__name__)
            raise UndefinedError(f"`{name}` is undefined on {kind}")
        if name is not None:
            raise UndefinedError(f"`{name}` is undefined")
        raise UndefinedError(self._undefined_hint or "a value is undefined")

    # Undefined binds these to its own method at class creation; rebind them to ours.
    __str__ = __iter__ = __len__ = __eq__ = __ne__ = __bool__ = __hash__ = _fail_with_undefined_error  # type: ignore[assignment]
    __getitem__ = __add__ = __radd__ = __mul__ = __contains__ = _fail_with_undefined_error  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __complex__ = __call__ = _fail_with_undefined_error  # type: ignore[assignment]


# -- limits ----------------------------------------------------------------------------------------
# The Jinja2 sandbox stops access to Python internals, but not a template that loops for ever,
# builds a gigabyte string ("x" * 10**9), recurses through macros, or nests a small list in itself
# until printing it is a gigabyte (`{% set a = [a, a] %}` 27 times: 2**27 copies of one text).
# A plan may come from anyone (a pull request), and the checks render it for every recipient:
# every render has a budget, and it is kept at every step, not only on the output.
#
# The rules:
# - every value a template makes (list/tuple/dict literals, `~`, every operator, every filter,
#   call and method result, a slice) is weighed at once: its size as text, counted exactly at
#   full depth (a shared part counts each time it appears, as it would when printed), memoised
#   per render by identity so re-weighing a shared part costs nothing; a value over MAX_TEXT,
#   MAX_ITEMS or nested deeper than MAX_NESTING is refused before anything prints it;
# - operations whose result can be much bigger than their inputs (`*`, `%`, format widths,
#   `replace`, `join`, `translate`, `indent`, `tojson`, `pprint`...) are refused *before* they run;
# - what a render builds is added up (MAX_BUILT): many values each under the limit cannot fill
#   memory together;
# - generators from filters are counted as they are consumed (`map(...)|list` cannot build more);
# - the clock (MAX_SECONDS of this thread's CPU time, so a busy host does not turn a good template
#   into a limit error) is read at every loop step, call, filter, operator and while weighing.
# Together: no template takes more than MAX_SECONDS or about 100 MB, whatever it nests.

MAX_TEXT = 1_000_000       # characters in the output, and in any one value a template builds
MAX_ITEMS = 100_000        # items in a list or dict a template builds
MAX_NESTING = 20           # lists/dicts/tuples inside each other
MAX_BUILT = 5_000_000      # characters of all the values one render builds, together
MAX_LOOPS = 100_000        # loop iterations in one render (all loops together)
MAX_DEPTH = 50             # nested macro calls and recursive loops
MAX_INT_BITS = 100_000     # about 30,000 decimal digits
MAX_SECONDS = 5.0          # one render
MAX_SOURCE = 200_000       # characters of one template: compiling is outside the render budget,
MAX_NODES = 10_000         # and tags and expressions cost time and memory to compile (~5 KB each)

_LIMITS_HINT = (f"templates may loop {MAX_LOOPS:,} times, nest {MAX_DEPTH} macro calls and {MAX_NESTING} lists "
                f"deep, build values of {MAX_TEXT:,} characters ({MAX_BUILT:,} in all) and run {MAX_SECONDS:g} s "
                "per message")


class TemplateLimit(TemplateError):
    """A template went over one of the limits above; `compose` reports it as a `template-limit` finding."""


class _Budget(threading.local):
    loops = 0
    output = 0
    built = 0
    depth = 0
    deadline = 0.0
    active = False
    memo: dict[int, tuple[Any, int, int]] = {}  # id -> (the value, kept alive so ids stay unique; weight; depth)


_BUDGET = _Budget()


def _tick() -> None:
    if _BUDGET.active and time.thread_time() > _BUDGET.deadline:
        raise TemplateLimit(f"rendering took longer than {MAX_SECONDS:g} s")


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _weigh(value: Any, limit: int = MAX_TEXT) -> tuple[int, int]:
    """(size as text in characters, nesting depth) of a value, exact at any depth; past `limit` it stops
    counting and returns more than `limit`. Raises TemplateLimit for nesting deeper than MAX_NESTING."""
    memo = _BUDGET.memo if _BUDGET.active else {}
    weight, depth, _ = _weigh_in(value, memo, 0, limit)
    return weight, depth


def _weigh_in(value: Any, memo: dict, level: int, limit: int) -> tuple[int, int, bool]:
    """(weight, depth, stable): `stable` is False when the weight may change later (it holds a
    `namespace()`, which `{% set ns.x %}` changes) or was cut off at `limit`; those are not memoised."""
    if isinstance(value, (str, bytes)):
        return len(value), 0, True
    if isinstance(value, _CONTAINERS) or isinstance(value, MappingView):
        known = memo.get(id(value))
        if known is not None:
            if level + known[2] > MAX_NESTING:  # a memoised part put deeper than it was
                raise TemplateLimit(f"lists, tuples or dicts nest more than {MAX_NESTING} deep")
            return known[1], known[2], True
        if level >= MAX_NESTING:
            raise TemplateLimit(f"lists, tuples or dicts nest more than {MAX_NESTING} deep")
        if isinstance(value, MappingView):
            # keys(), values(), items() of a dict: weighed as the dict (its items are made afresh on
            # every iteration, so they are not memoised).
            value = value.mapping  # type: ignore[attr-defined]
        total, depth, stable = 2, 0, True
        if isinstance(value, Mapping):
            for count, key in enumerate(value):
                if count & 1023 == 1023:
                    _tick()
                k_weight, k_depth, k_stable = _weigh_in(key, memo, level + 1, limit)
                v_weight, v_depth, v_stable = _weigh_in(value[key], memo, level + 1, limit)
                total += k_weight + v_weight + 4
                depth, stable = max(depth, k_depth, v_depth), stable and k_stable and v_stable
                if total > limit:
                    return total, depth + 1, False
        else:
            for count, item in enumerate(value):
                if count & 1023 == 1023:
                    _tick()
                i_weight, i_depth, i_stable = _weigh_in(item, memo, level + 1, limit)
                total += i_weight + 2
                depth, stable = max(depth, i_depth), stable and i_stable
                if total > limit:
                    return total, depth + 1, False
        if stable and isinstance(value, _CONTAINERS):
            memo[id(value)] = (value, total, depth + 1)
        return total, depth + 1, stable
    if isinstance(value, bool) or value is None:
        return 5, 0, True
    if isinstance(value, int):
        return value.bit_length() // 3 + 1, 0, True
    if isinstance(value, JinjaNamespace):
        attrs = object.__getattribute__(value, "_Namespace__attrs")
        if level >= MAX_NESTING:
            raise TemplateLimit(f"lists, tuples or dicts nest more than {MAX_NESTING} deep")
        weight, depth, _ = _weigh_in(dict(attrs), memo, level + 1, limit)  # a copy: never memoised
        return weight + 13, depth + 1, False
    if isinstance(value, Cycler):
        weight, depth, stable = _weigh_in(value.items, memo, level, limit)
        return weight, depth, stable
    return 32, 0, True  # numbers, dates, macros, loops, <generator>, <method>: short, fixed texts


def _weight(value: Any) -> int:
    return _weigh(value, MAX_TEXT)[0]


def _built(amount: int, what: str) -> None:
    if _BUDGET.active:
        _BUDGET.built += amount
        if _BUDGET.built > MAX_BUILT:
            raise TemplateLimit(f"the values this template builds add up to over {MAX_BUILT:,} characters "
                                f"(at {what})")


def _sized(value: Any, what: str = "a value", *, new: int | None = None) -> Any:
    """Refuse a value over the limits; count what building it cost (`new`: its own size unless given)."""
    if isinstance(value, (str, bytes)):  # most values: checked inline, this runs for every output
        size = len(value)
        if size > MAX_TEXT:
            raise TemplateLimit(f"{what} is {size:,} characters long (the limit is {MAX_TEXT:,})")
        if new != 0:
            _built(size if new is None else new, what)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"{what} is a number over {MAX_INT_BITS:,} bits")
    elif isinstance(value, (float, Namespace, Macro, LoopContext, _Bound, _Lazy)) or value is None:
        pass
    else:
        if isinstance(value, _CONTAINERS) and len(value) > MAX_ITEMS:
            raise TemplateLimit(f"{what} has {len(value):,} items (the limit is {MAX_ITEMS:,})")
        weight, _ = _weigh(value)
        if weight > MAX_TEXT:
            raise TemplateLimit(f"{what} is over {MAX_TEXT:,} characters as text")
        _built(weight if new is None else new, what)
    return value


def _slots(value: Any) -> int | None:
    """What a new list/tuple/dict costs when its items already exist: its slots, not their text."""
    return len(value) + 2 if isinstance(value, _CONTAINERS) else None


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _check_repeat(left: Any, right: Any) -> None:
    """`text * n`, `n * text`, `list * n`, `n * list`: refuse before Python allocates the result."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) and times > 0:
            if _weigh(seq, MAX_TEXT)[0] * times > MAX_TEXT:
                raise TemplateLimit(f"repeating a value {times:,} times goes over {MAX_TEXT:,} characters")
            if not isinstance(seq, (str, bytes)) and len(seq) * times > MAX_ITEMS:
                raise TemplateLimit(f"repeating a list {times:,} times goes over {MAX_ITEMS:,} items")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise TemplateLimit(f"{left} ** {right} is a number over {MAX_INT_BITS:,} bits")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])?")


def _check_percent(template: Any, args: Any) -> None:
    """`text % args` and the `format` filter: the result is bounded before it is built.

    Every `%` field prints at most its width or its argument; a `%(name)s` field may print the same
    argument many times, so with a mapping every field counts the whole mapping; `%r`/`%a` escape.
    """
    if not isinstance(template, (str, bytes)):
        return
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    if "%" not in text:
        return
    values = args if isinstance(args, tuple) else (args,)
    stars = max([_count(v) for v in values] or [0])
    fields, widths, escaping = 0, 0, 1
    for width, precision, conversion in _PERCENT_SPEC.findall(text):
        if conversion == "%":
            continue
        fields += 1
        for number in (width, precision):
            if number == "*":
                widths += stars
            elif number:
                if len(number) > 7 or int(number) > MAX_TEXT:
                    raise TemplateLimit(f"a format width of {int(number):,} is over the limit of {MAX_TEXT:,}")
                widths += int(number)
        if conversion in ("r", "a"):
            escaping = 10  # repr() of a text can be up to ten times longer ("\U0001f600")
    argument = _weigh(args, MAX_TEXT)[0] * escaping
    if isinstance(args, Mapping):
        argument *= max(fields, 1)
    if len(text) + widths + argument > MAX_TEXT:
        raise TemplateLimit(f"this % format makes a text over {MAX_TEXT:,} characters")


def _check_format_spec(spec: str) -> int:
    """A str.format field's width; refused when over the limit."""
    widest = 0
    for number in re.findall(r"\d+", spec or ""):
        if len(number) > 7 or int(number) > MAX_TEXT:
            raise TemplateLimit(f"a format width of {number} is over the limit of {MAX_TEXT:,}")
        widest = max(widest, int(number))
    return widest


def _check_text_method(name: str, text: str | bytes, args: tuple, kwargs: dict) -> None:
    """Methods of str/bytes whose result can be far bigger than their inputs."""
    if name in ("center", "ljust", "rjust", "zfill"):
        if any(_count(v) > MAX_TEXT for v in (*args, *kwargs.values())):
            raise TemplateLimit(f"{name}() to a width over {MAX_TEXT:,}")
    elif name == "expandtabs":
        size = max([_count(v) for v in (*args, *kwargs.values())] or [8])
        if text.count("\t" if isinstance(text, str) else b"\t") * size + len(text) > MAX_TEXT:
            raise TemplateLimit(f"expandtabs({size:,}) goes over {MAX_TEXT:,} characters")
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "join" and args:
        _check_join(text, args[0])
    elif name == "translate" and args and isinstance(text, str):
        table = args[0]
        longest = max([len(v) if isinstance(v, str) else 1 for v in table.values()] or [1]) \
            if isinstance(table, Mapping) else 1
        if len(text) * longest > MAX_TEXT:
            raise TemplateLimit(f"this translate makes a text over {MAX_TEXT:,} characters")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    text, old, new = str(text), str(old), str(new)
    hits = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(0, len(new) - len(old)) > MAX_TEXT:
        raise TemplateLimit(f"this replace makes a text over {MAX_TEXT:,} characters")


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, _CONTAINERS):
        if _weigh(items, MAX_TEXT)[0] + len(items) * len(str(separator)) > MAX_TEXT:
            raise TemplateLimit(f"joining these makes a text over {MAX_TEXT:,} characters")


def _check_filter(name: str, bound: inspect.BoundArguments) -> None:
    """Built-in filters whose result can be far bigger than their input, refused before they run."""
    values = bound.arguments
    value = next(iter(values.values()), None)
    for argument in values.values():
        _sized(argument, f"the value given to `{name}`", new=0)
    if name == "replace":
        _check_replace(value, values.get("old", ""), values.get("new", ""), values.get("count") or -1)
    elif name == "join":
        _check_join(values.get("d", ""), value)
    elif name == "format":
        _check_percent(value, values.get("kwargs") or tuple(values.get("args", ())))
    elif name == "indent":
        width = values.get("width", 4)
        lines = str(value).count("\n") + 1
        if (len(width) if isinstance(width, str) else _count(width)) * lines > MAX_TEXT:
            raise TemplateLimit(f"indenting by this much goes over {MAX_TEXT:,} characters")
    elif name == "wordwrap":
        wrap = values.get("wrapstring") or "\n"
        width = max(_count(values.get("width", 79)), 1)
        if len(str(value)) + (len(str(value)) // width + 1) * len(str(wrap)) > MAX_TEXT:
            raise TemplateLimit(f"this wordwrap makes a text over {MAX_TEXT:,} characters")
    elif name in ("tojson", "pprint"):
        # Every line of the result is indented by its depth: a deep value prints far larger than it weighs.
        weight, depth = _weigh(value)
        indent = values.get("indent") if name == "tojson" else 1
        step = len(indent) if isinstance(indent, str) else _count(indent)
        if step > MAX_TEXT or weight * (1 + depth * step) > MAX_TEXT:
            raise TemplateLimit(f"`{name}` of this value makes a text over {MAX_TEXT:,} characters")
    elif name == "sum" and not isinstance(values.get("start", 0), (int, float)):
        raise TemplateError("`sum` adds numbers; to put lists together use `+` or a loop")
    elif name in ("center", "batch", "slice", "truncate"):
        for key, number in values.items():
            if key != next(iter(values)) and _count(number) > MAX_TEXT:
                raise TemplateLimit(f"{name}({key}={number:,}) is over the limit of {MAX_TEXT:,}")


def _guard_filter(name: str, function: Callable) -> Callable:
    signature = inspect.signature(function)
    passes_arg = _PassArg.from_obj(function) is not None

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return function(*args, **kwargs)  # Jinja's own message for wrong arguments
        if passes_arg:
            bound.arguments.pop(next(iter(bound.arguments)))
        _check_filter(name, bound)
        return _sized(_stable(function(*args, **kwargs)), f"the result of `{name}`")

    return guarded


# -- the same text every time ----------------------------------------------------------------------
# Validation renders every recipient, then the send renders them again: a template must give the
# same text both times. So nothing a template sees is random (no `random` filter, `lipsum` is
# seeded), nothing prints a memory address (functions, methods and generators print as
# `<method upper>`, `<generator>`), and a set's hash order never decides what prints.


class _Bound:
    """A function or method a template holds: prints as `<method name>`; only the sandbox calls it."""

    __slots__ = ("function", "name")

    def __init__(self, function: Callable, name: str | None = None) -> None:
        self.function, self.name = function, name or getattr(function, "__name__", "function")

    def __repr__(self) -> str:
        owner = getattr(self.function, "__self__", None)
        return f"<method {self.name}>" if owner is not None and not isinstance(owner, types.ModuleType) \
            else f"<function {self.name}>"

    __str__ = __repr__


class _Lazy:
    """A generator a filter or call returned (map, select, batch, items...): counted as it is consumed,
    so `|list` or `|join` of it cannot build more than the limits, and it prints as `<generator>`."""

    __slots__ = ("_iterator", "_items", "_weight")

    def __init__(self, iterator: Iterator) -> None:
        self._iterator, self._items, self._weight = iterator, 0, 0

    def __iter__(self) -> "_Lazy":
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        _tick()
        self._items += 1
        self._weight += _weigh(item, MAX_TEXT)[0] + 2
        if self._items > MAX_ITEMS:
            raise TemplateLimit(f"a sequence from a filter has over {MAX_ITEMS:,} items")
        if self._weight > MAX_TEXT:
            raise TemplateLimit(f"a sequence from a filter is over {MAX_TEXT:,} characters as text")
        return item

    def __repr__(self) -> str:
        return "<generator>"

    __str__ = __repr__


_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.MethodWrapperType,
              BlockReference, functools.partial)


def _stable(value: Any) -> Any:
    """What a template may hold: functions wrapped (no address in their text), generators counted."""
    if isinstance(value, (str, int, float, list, tuple, dict, Namespace, _Bound, _Lazy)):
        return value
    if isinstance(value, _FUNCTIONS):
        return _Bound(value)
    if isinstance(value, Iterator):
        return _Lazy(value)
    return value


class _Cycler(Cycler):
    def __repr__(self) -> str:
        return "<cycler>"


class _Joiner(Joiner):
    def __repr__(self) -> str:
        return "<joiner>"


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's lorem ipsum, limited, and the same text every time (seeded by its arguments)."""

    if _count(n) > 100 or _count(max) > 1000 or _count(min) > 1000:
        raise TemplateLimit("lipsum() is limited to 100 paragraphs of 1,000 words")
    chance = random.Random(f"{n}/{html}/{min}/{max}")
    words = LOREM_IPSUM_WORDS.split()
    paragraphs = []
    for _ in range(n):
        capital, last_comma, last_stop, last, chosen = True, 0, 0, None, []
        for index in range(chance.randrange(min, max)):
            word = chance.choice(words)
            while word == last:
                word = chance.choice(words)
            last = word
            if capital:
                word, capital = word.capitalize(), False
            if index - chance.randrange(3, 8) > last_comma:
                last_comma, last_stop, word = index, last_stop + 2, word + ","
            if index - chance.randrange(10, 20) > last_stop:
                last_comma = last_stop = index
                word, capital = word + ".", True
            chosen.append(word)
        text = " ".join(chosen)
        paragraphs.append(text[:-1] + "." if text.endswith(",") else text if text.endswith(".") else text + ".")
    if not html:
        return "\n\n".join(paragraphs)
    return Markup("\n".join(f"<p>{escape(p)}</p>" for p in paragraphs))


class _Formatter(SandboxedFormatter):
    """str.format in templates: the sandbox's attribute rules, and widths and the total capped like the text."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        width = _check_format_spec(format_spec)
        self.size += max(width, _weigh(value, MAX_TEXT)[0])
        if self.size > MAX_TEXT:
            raise TemplateLimit(f"this format makes a text over {MAX_TEXT:,} characters")
        return _sized(super().format_field(value, format_spec), "a formatted value", new=0)


class _NoFiles(BaseLoader):
    """{% include %}, {% import %} and {% extends %} would read files: templates are one file each."""

    def get_source(self, environment: Any, template: str) -> Any:
        raise SecurityError(f"templates cannot include, import or extend other files ({template!r})")


class _Guard(NodeTransformer):
    """Rewrite a parsed template so loops, every value it builds and printed values pass the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("relcomm_loop", node.iter)
        return node

    def visit_NSRef(self, node: nodes.NSRef) -> nodes.Node:
        if node.attr.startswith("_"):
            raise TemplateSyntaxError(f"`{node.name}.{node.attr}`: names starting with _ are not allowed", node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        # `a ~ b ~ ...` turns each part into text: one at a time, so the total is known before it is built.
        return _call("relcomm_concat", nodes.ContextReference(lineno=node.lineno), *node.nodes)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node  # `{% for a, b in ... %}`: a target, not a value
        return _call("relcomm_literal", node)

    visit_List = visit_Tuple = visit_Dict = _literal

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx == "load" and node.name in ("varargs", "kwargs"):
            # A macro's extra arguments: a tuple and a dict Jinja builds, weighed like a literal.
            return _call("relcomm_literal", node)
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        # `==` and `in` walk both sides: they are weighed first, like anything a filter is given.
        node.expr = _call("relcomm_checked", node.expr)
        for operand in node.ops:
            operand.expr = _call("relcomm_checked", operand.expr)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.arg, nodes.Slice):
            # Jinja compiles `s[i:]` to a plain Python slice, past the sandbox: count the copy it makes.
            return _call("relcomm_slice", node)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        # Literal text too: a loop repeating a large literal is output like any other (and so has a line).
        node.nodes = [_call("relcomm_size", child) for child in node.nodes]
        return node


def _call(name: str, *arguments: nodes.Expr) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=arguments[0].lineno), list(arguments), [], None, None,
                      lineno=arguments[0].lineno)


def _loop(iterable: Any) -> Any:
    for item in iterable:
        _BUDGET.loops += 1
        if _BUDGET.loops > MAX_LOOPS:
            raise TemplateLimit(f"the loops ran more than {MAX_LOOPS:,} times")
        _tick()
        yield item


def _size(value: Any) -> Any:
    _sized(value, "a printed value", new=0)
    if _BUDGET.active:
        _BUDGET.output += len(value) if isinstance(value, str) else _weight(value)
        if _BUDGET.output > MAX_TEXT:
            raise TemplateLimit(f"the output is over {MAX_TEXT:,} characters")
    return value


def _literal(value: Any) -> Any:
    kind = "a dict" if isinstance(value, dict) else "a tuple" if isinstance(value, tuple) else "a list"
    return _sized(value, f"{kind} the template builds", new=_slots(value))


def _checked(value: Any) -> Any:
    return _sized(value, "a value compared", new=0)


def _slice(value: Any) -> Any:
    _tick()
    return _sized(_stable(value), "a slice", new=_slots(value))


def _concat(context: Any, *parts: Any) -> str:
    pieces, size = [], 0
    for part in parts:
        _tick()
        size += _weigh(part, MAX_TEXT)[0]
        if size > MAX_TEXT:
            raise TemplateLimit(f"text joined with ~ is over {MAX_TEXT:,} characters")
        pieces.append(part)
    if context.eval_ctx.autoescape or context.eval_ctx.volatile:
        joined = markup_join(pieces)  # what Jinja does in an {% autoescape %} block
    else:
        joined = str_join(pieces)
    return _sized(joined, "text joined with ~")


_INTERNAL = {_size: _size, _loop: _loop, _literal: _literal, _concat: _concat, _slice: _slice, _checked: _checked}


def _subtract(left: Any, right: Any) -> Any:
    result = left - right
    if isinstance(result, (set, frozenset)):
        # dict.keys() - [...] is a set, whose order follows string hashes, which differ from one run
        # to the next: keep the left side's order, so validation and sending print the same.
        return [item for item in left if item in result]
    return result


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox (no list.append, dict.update...) with budgets: see the limits above."""

    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.relcomm_loop = _loop
        self.relcomm_size = _size
        self.relcomm_literal = _literal
        self.relcomm_concat = _concat
        self.relcomm_slice = _slice
        self.relcomm_checked = _checked
        self.binop_table = {**self.binop_table, "-": _subtract}
        self.globals.update(range=_Bound(self.globals["range"], "range"), lipsum=_Bound(_lipsum, "lipsum"),
                            cycler=_Cycler, joiner=_Joiner)
        # `random` would render one text when validating and another when sending.
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items() if name != "random"}
        self.tests = {name: _guard_filter(name, f) for name, f in self.tests.items()}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        count = sum(1 for _ in tree.find_all(nodes.Node))
        if count > MAX_NODES:
            raise TemplateLimit(f"the template has {count:,} tags, variables and operators (the limit is "
                                f"{MAX_NODES:,}); compiling it would take too long")
        return _Guard().visit(tree)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)  # also where it does not exist (`range.__globals__`)
        return _stable(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = _stable(super().getitem(obj, argument))
        return _slice(value) if isinstance(argument, slice) else value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%":
            _check_percent(left, right)
        elif operator == "+" and isinstance(left, (str, bytes, list, tuple)) and type(left) is type(right):
            if _weigh(left, MAX_TEXT)[0] + _weigh(right, MAX_TEXT)[0] > MAX_TEXT:
                raise TemplateLimit(f"the result of + is over {MAX_TEXT:,} characters")
        result = self.binop_table[operator](left, right)
        return _sized(result, f"the result of {operator}", new=_slots(result))

    def call(__self, __context: Any, __obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        internal = _INTERNAL.get(__obj) if isinstance(__obj, types.FunctionType) else None
        if internal is not None:
            return internal(*args)
        _tick()
        if isinstance(__obj, _Bound):
            __obj = __obj.function
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            _check_text_method(getattr(__obj, "__name__", ""), owner, args, kwargs)
        nested = isinstance(__obj, (Macro, LoopContext))
        if isinstance(__obj, LoopContext) and args:
            args = (_loop(args[0]), *args[1:])  # a recursive loop's inner iterations count too
        if nested:
            _BUDGET.depth += 1
            if _BUDGET.depth > MAX_DEPTH:
                _BUDGET.depth -= 1
                raise TemplateLimit(f"macros or recursive loops nest more than {MAX_DEPTH} deep")
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            if nested:
                _BUDGET.depth -= 1
        return _sized(_stable(result), "the result of a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The test Jinja makes, without building its wrapper only to drop it (this runs on every lookup).
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) \
                or value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        text: str = value.__self__
        is_map = value.__name__ == "format_map"

        def format_(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return _sized(str(_Formatter(self).vformat(text, args, kwargs)), "a formatted text")

        format_.__name__ = value.__name__
        return format_


def _finalize(value: Any) -> Any:
    # An empty CSV cell or an absent phone renders as nothing, never as "None".
    return "" if value is None else value


def new_environment() -> _Sandbox:
    """The sandbox templates render in: made once, below; the guard tests make their own, so that
    a mutation run (which switches a mutant on after import) reaches `_Sandbox.__init__` too."""
    return _Sandbox(
        undefined=_Undefined,
        autoescape=False,  # the source is Markdown/text; the Markdown -> HTML step escapes
        keep_trailing_newline=True,
        finalize=_finalize,
        loader=_NoFiles(),
        cache_size=0,
    )


ENVIRONMENT = new_environment()

_LOCK = threading.Lock()
_COMPILED: dict[tuple[str, str], Any] = {}
_MAX_COMPILED = 256


@dataclass(frozen=True)
class Source:
    """Template text and where it came from: a file, or a plan key (line offset into the plan file)."""

    text: str
    file: str          # shown in errors
    line_offset: int = 0  # added to template line numbers (inline bodies live inside plan.toml)
    fixed_line: int | None = None  # a one-line string in plan.toml: every template line is this line
    label: str = ""    # e.g. "subject", for messages


def compile_template(source: Source):
    key = (source.text, source.file)
    template = _COMPILED.get(key)
    if template is not None:
        return template
    if len(source.text) > MAX_SOURCE:
        raise TemplateProblem(
            f"template too long{_label(source)}: {len(source.text):,} characters (the limit is {MAX_SOURCE:,})",
            file=source.file, line=source.fixed_line, hint="a template is a text of a few pages; put long "
            "release notes in the notes file (`notes`)", kind="limit")
    try:
        code = ENVIRONMENT.compile(source.text, name=source.file, filename=source.file)
    except TemplateLimit as error:
        raise TemplateProblem(f"template too large{_label(source)}: {error}", file=source.file,
                              line=source.fixed_line, hint="split it, or put long text in the notes file", kind="limit",
                              ) from None
    except (RecursionError, MemoryError, SyntaxError):
        # Thousands of nested brackets or blocks: Python's parser gives up before Jinja's does.
        raise TemplateProblem(
            f"template too deeply nested{_label(source)}", file=source.file, line=source.fixed_line,
            hint="a template may nest brackets and blocks a few dozen deep, not thousands", kind="syntax",
        ) from None
    except TemplateSyntaxError as error:
        line = source.fixed_line or (error.lineno or 1) + source.line_offset
        raise TemplateProblem(
            f"template syntax error{_label(source)}: {error.message}", file=source.file, line=line,
            hint=_syntax_hint(error.message or ""), kind="syntax",
        ) from None
    # A plain dict, not the ChainMap make_globals() gives: every render copies it into a new context.
    template = ENVIRONMENT.template_class.from_code(ENVIRONMENT, code, dict(ENVIRONMENT.globals), None)
    with _LOCK:
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()  # editing in the live preview makes new versions; drop the old ones
        _COMPILED[key] = template
    return template


def render_source(source: Source, context: Mapping[str, Any]) -> str:
    template = compile_template(source)
    budget = _BUDGET
    outer = budget.active  # a render inside a render (none today) shares the outer budget
    if not outer:
        budget.loops, budget.output, budget.depth, budget.built, budget.memo = 0, 0, 0, 0, {}
        budget.deadline, budget.active = time.thread_time() + MAX_SECONDS, True
    try:
        pieces, size = [], 0
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_TEXT:
                raise TemplateLimit(f"the output is over {MAX_TEXT:,} characters")
            pieces.append(piece)
        return "".join(pieces)
    except TemplateLimit as error:
        raise TemplateProblem(
            f"template over a limit{_label(source)}: {error}", file=source.file, line=_error_line(source),
            hint=_LIMITS_HINT, kind="limit",
        ) from None
    except (RecursionError, MemoryError):
        raise TemplateProblem(
            f"template over a limit{_label(source)}: it recurses or grows without end", file=source.file,
            line=_error_line(source), hint="check macros that call themselves and loops over their own data",
            kind="limit",
        ) from None
    except UndefinedError as error:
        raise TemplateProblem(
            f"undefined variable{_label(source)}: {error.message}", file=source.file,
            line=_error_line(source), hint=_undefined_hint(str(error.message), context), kind="undefined",
        ) from None
    except SecurityError as error:
        raise TemplateProblem(
            f"not allowed in a template{_label(source)}: {error}", file=source.file, line=_error_line(source),
            hint="templates are sandboxed: use the variables relcomm provides", kind="security",
        ) from None
    except TemplateError as error:
        raise TemplateProblem(
            f"template error{_label(source)}: {error}", file=source.file, line=_error_line(source),
            hint="see docs/plan-format.md, section Templates", kind="error",
        ) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, UnicodeError, RuntimeError) as error:
        raise TemplateProblem(
            f"template failed{_label(source)}: {type(error).__name__}: {error}", file=source.file,
            line=_error_line(source), hint="check the expression on that line", kind="error",
        ) from None
    finally:
        if not outer:
            budget.active, budget.memo = False, {}  # the memo holds values alive: let them go


def _label(source: Source) -> str:
    return f" in {source.label}" if source.label else ""


def _error_line(source: Source) -> int | None:
    # Jinja rewrites the traceback so template frames carry the template's file name and line.
    line = None
    tb = sys.exc_info()[2]
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == source.file:
            line = tb.tb_lineno
        tb = tb.tb_next
    if source.fixed_line is not None:
        return source.fixed_line
    return None if line is None else line + source.line_offset


def _syntax_hint(message: str) -> str:
    if "unexpected '}'" in message or "expected token" in message:
        return "a variable is written {{ name }} and a tag {% if ... %}; check the braces on that line"
    if "Unexpected end of template" in message:
        return "a block ({% if %}, {% for %}) is not closed: add {% endif %} / {% endfor %}"
    if "No filter named 'random'" in message:
        return "a template renders the same text when it is checked and when it is sent: `random` is not available"
    if "unknown tag" in message.lower():
        return "templates use Jinja2 tags: if, for, set, with, filter, macro, raw"
    return "templates are Jinja2: https://jinja.palletsprojects.com/templates/"


def _undefined_hint(message: str, context: Mapping[str, Any]) -> str:
    if "`recipient" in message and "recipient" not in context:
        return "this communique posts once, not per person: there is no `recipient`; use `release`, `groups` or `communique`"
    if "`recipient." in message:
        return "recipient has name, email, phone, role and the extra columns of the members CSV; add the column or use {{ recipient.x | default('') }}"
    if "`group" in message and "group" not in context:
        return "this communique posts once, not per group: there is no `group`; use `groups`"
    names = ", ".join(sorted(context))
    return f"templates see: {names}; use {{{{ name | default('') }}}} for optional values"
