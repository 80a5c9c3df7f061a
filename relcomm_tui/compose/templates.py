"""Jinja2 templating for communiques: sandboxed, strict, cached, with errors that point at a line.

A template is compiled once per source text; a template *file* is re-read only when its
mtime or size changes, so 10,000 renders cost one read while the live preview still sees edits.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any, Callable, Mapping

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg, missing
from jinja2.visitor import NodeTransformer


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
        self._values = dict(values)
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


class _Undefined(StrictUndefined):
    """StrictUndefined that names the variable the way the template wrote it (`recipient.company`)."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        owner = self._undefined_obj
        name = self._undefined_name
        if self._undefined_exception is SecurityError:
            # The sandbox refused an attribute (`__class__`, `__globals__`, ...): say so, not "undefined".
            raise SecurityError(f"`{name}` is not accessible in templates")
        if isinstance(owner, Namespace):
            known = sorted(owner)
            close = difflib.get_close_matches(str(name), known, n=1)
            guess = f"did you mean `{owner._relcomm_name}.{close[0]}`? " if close else ""
            raise UndefinedError(f"`{owner._relcomm_name}.{name}` is undefined ({guess}it has: {', '.join(known)})")
        if name is not None and owner is not missing:
            raise UndefinedError(f"`{name}` is undefined on {type(owner).__name__}")
        if name is not None:
            raise UndefinedError(f"`{name}` is undefined")
        raise UndefinedError(self._undefined_hint or "a value is undefined")

    # Undefined binds these to its own method at class creation; rebind them to ours.
    __str__ = __iter__ = __len__ = __eq__ = __ne__ = __bool__ = __hash__ = _fail_with_undefined_error  # type: ignore[assignment]
    __getitem__ = __add__ = __radd__ = __mul__ = __contains__ = _fail_with_undefined_error  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __complex__ = __call__ = _fail_with_undefined_error  # type: ignore[assignment]


# -- limits ----------------------------------------------------------------------------------------
# The Jinja2 sandbox stops access to Python internals, but not a template that loops for ever,
# builds a gigabyte string ("x" * 10**9) or recurses through macros. A plan may come from anyone
# (a pull request), and the checks render it for every recipient: every render has a budget.

MAX_TEXT = 1_000_000       # characters in the output, and in any one value a template builds
MAX_ITEMS = 100_000        # items in a list or dict a template builds
MAX_LOOPS = 100_000        # loop iterations in one render (all loops together)
MAX_DEPTH = 50             # nested macro calls and recursive loops
MAX_INT_BITS = 100_000     # about 30,000 decimal digits
MAX_SECONDS = 5.0          # one render


class TemplateLimit(TemplateError):
    """A template went over one of the limits above; `compose` reports it as a `template-limit` finding."""


class _Budget(threading.local):
    loops = 0
    output = 0
    depth = 0
    deadline = 0.0
    active = False


_BUDGET = _Budget()


def _tick() -> None:
    if _BUDGET.active and time.monotonic() > _BUDGET.deadline:
        raise TemplateLimit(f"rendering took longer than {MAX_SECONDS:g} s")


def _weight(value: Any, depth: int = 0, limit: int = MAX_TEXT + 1) -> int:
    """About how many characters the value is as text; stops counting past `limit`."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = len(value)
        if depth >= 4 or total > limit:
            return total
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            total += _weight(item, depth + 1, limit - total)
            if total > limit:
                break
        return total
    return 1


def _sized(value: Any, what: str = "a value") -> Any:
    if isinstance(value, (str, bytes)):
        if len(value) > MAX_TEXT:
            raise TemplateLimit(f"{what} is {len(value):,} characters long (the limit is {MAX_TEXT:,})")
    elif isinstance(value, (list, tuple, set, frozenset, dict)):
        if len(value) > MAX_ITEMS:
            raise TemplateLimit(f"{what} has {len(value):,} items (the limit is {MAX_ITEMS:,})")
        if _weight(value) > MAX_TEXT:
            raise TemplateLimit(f"{what} is over {MAX_TEXT:,} characters as text")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"{what} is a number over {MAX_INT_BITS:,} bits")
    return value


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _check_repeat(left: Any, right: Any) -> None:
    """`text * n` and `list * n`: refuse before Python allocates the result."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int):
            if times > 0 and _weight(seq) * times > MAX_TEXT or (not isinstance(seq, (str, bytes)) and len(seq) * times > MAX_ITEMS):
                raise TemplateLimit(f"repeating a value {times:,} times goes over {MAX_TEXT:,} characters")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise TemplateLimit(f"{left} ** {right} is a number over {MAX_INT_BITS:,} bits")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent(template: Any, args: Any) -> None:
    """`"%9999999999s" % x` and the `format` filter: a width or precision is capped like the text."""
    if not isinstance(template, (str, bytes)):
        return
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    if "%" not in text:
        return
    star = False
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number and int(number) > MAX_TEXT:
                raise TemplateLimit(f"a format width of {int(number):,} is over the limit of {MAX_TEXT:,}")
    values = args if isinstance(args, (tuple, list)) else (args,)
    if star and any(_count(v) > MAX_TEXT for v in values):
        raise TemplateLimit(f"a format width over {MAX_TEXT:,} is over the limit")


def _check_format_spec(spec: str) -> None:
    for number in re.findall(r"\d+", spec or ""):
        if len(number) > 7 or int(number) > MAX_TEXT:
            raise TemplateLimit(f"a format width of {number} is over the limit of {MAX_TEXT:,}")


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
        _check_replace(text, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        _check_join(text, args[0])


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    text, old, new = str(text), str(old), str(new)
    hits = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(0, len(new) - len(old)) > MAX_TEXT:
        raise TemplateLimit(f"this replace makes a text over {MAX_TEXT:,} characters")


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, (list, tuple, set, frozenset, dict)):
        if _weight(items) + len(items) * len(str(separator)) > MAX_TEXT:
            raise TemplateLimit(f"joining these makes a text over {MAX_TEXT:,} characters")


def _check_filter(name: str, bound: inspect.BoundArguments) -> None:
    """Built-in filters whose result can be far bigger than their input."""
    values = bound.arguments
    value = next(iter(values.values()), None)
    if name == "replace":
        _check_replace(value, values.get("old", ""), values.get("new", ""), values.get("count") or -1)
    elif name == "join":
        _check_join(values.get("d", ""), value)
    elif name == "format":
        _check_percent(value, values.get("args", ()) or tuple((values.get("kwargs") or {}).values()))
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
    elif name in ("center", "batch", "slice", "tojson", "truncate"):
        for key, number in values.items():
            if key != next(iter(values)) and _count(number) > MAX_TEXT:
                raise TemplateLimit(f"{name}({key}={number:,}) is over the limit of {MAX_TEXT:,}")
    for number in values.values():
        if isinstance(number, (list, tuple, dict, str, bytes)):
            _sized(number, f"the value given to `{name}`")


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
        return _sized(function(*args, **kwargs), f"the result of `{name}`")

    return guarded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    from jinja2.utils import generate_lorem_ipsum

    if _count(n) > 100 or _count(max) > 1000 or _count(min) > 1000:
        raise TemplateLimit("lipsum() is limited to 100 paragraphs of 1,000 words")
    return generate_lorem_ipsum(n, html, min, max)


class _Formatter(SandboxedFormatter):
    """str.format in templates: the sandbox's attribute rules, and widths capped like the text."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format_spec(format_spec)
        return _sized(super().format_field(value, format_spec), "a formatted value")


class _NoFiles(BaseLoader):
    """{% include %}, {% import %} and {% extends %} would read files: templates are one file each."""

    def get_source(self, environment: Any, template: str) -> Any:
        raise SecurityError(f"templates cannot include, import or extend other files ({template!r})")


class _Guard(NodeTransformer):
    """Rewrite a parsed template so loops, text built with `~` and printed values pass the budget."""

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
        return _call("relcomm_size", node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        # Literal text too: a loop repeating a large literal is output like any other (and so has a line).
        node.nodes = [_call("relcomm_size", child) for child in node.nodes]
        return node


def _call(name: str, argument: nodes.Expr) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=argument.lineno), [argument], [], None, None,
                      lineno=argument.lineno)


def _loop(iterable: Any) -> Any:
    for item in iterable:
        _BUDGET.loops += 1
        if _BUDGET.loops > MAX_LOOPS:
            raise TemplateLimit(f"the loops ran more than {MAX_LOOPS:,} times")
        _tick()
        yield item


def _size(value: Any) -> Any:
    _sized(value, "a printed value")
    if _BUDGET.active:
        _BUDGET.output += len(value) if isinstance(value, str) else _weight(value)
        if _BUDGET.output > MAX_TEXT:
            raise TemplateLimit(f"the output is over {MAX_TEXT:,} characters")
    return value


class _Sandbox(SandboxedEnvironment):
    """The sandbox with budgets: see the limits above."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.relcomm_loop = _loop
        self.relcomm_size = _size
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Guard().visit(super()._parse(source, name, filename))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%":
            _check_percent(left, right)
        return _sized(self.binop_table[operator](left, right), f"the result of {operator}")

    def call(__self, __context: Any, __obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if __obj is _size:
            return _size(*args)
        if __obj is _loop:
            return _loop(*args)
        _tick()
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
        if isinstance(owner, (list, dict, set)):
            _sized(owner, "a list or dict the template grows")
        return _sized(result, "the result of a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        formatter = _Formatter(self)
        is_map = value.__name__ == "format_map"

        def format_(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return _sized(str(formatter.vformat(text, args, kwargs)), "a formatted text")

        return format_


def _finalize(value: Any) -> Any:
    # An empty CSV cell or an absent phone renders as nothing, never as "None".
    return "" if value is None else value


ENVIRONMENT = _Sandbox(
    undefined=_Undefined,
    autoescape=False,  # the source is Markdown/text; the Markdown -> HTML step escapes
    keep_trailing_newline=True,
    finalize=_finalize,
    loader=_NoFiles(),
    cache_size=0,
)

_LOCK = threading.Lock()
_COMPILED: dict[tuple[str, str], Any] = {}
_FILES: dict[str, tuple[int, int, str]] = {}
_MAX_COMPILED = 256


@dataclass(frozen=True)
class Source:
    """Template text and where it came from: a file, or a plan key (line offset into the plan file)."""

    text: str
    file: str          # shown in errors
    line_offset: int = 0  # added to template line numbers (inline bodies live inside plan.toml)
    fixed_line: int | None = None  # a one-line string in plan.toml: every template line is this line
    label: str = ""    # e.g. "subject", for messages


def read_template_file(path: Path) -> str:
    """The file's text, re-read only when it changed on disk. Raises OSError/UnicodeDecodeError."""
    stat = os.stat(path)
    key = str(path)
    cached = _FILES.get(key)
    if cached is not None and cached[0] == stat.st_mtime_ns and cached[1] == stat.st_size:
        return cached[2]
    text = path.read_bytes().decode("utf-8-sig")
    with _LOCK:
        _FILES[key] = (stat.st_mtime_ns, stat.st_size, text)
    return text


def compile_template(source: Source):
    key = (source.text, source.file)
    template = _COMPILED.get(key)
    if template is not None:
        return template
    try:
        code = ENVIRONMENT.compile(source.text, name=source.file, filename=source.file)
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
        budget.loops, budget.output, budget.depth = 0, 0, 0
        budget.deadline, budget.active = time.monotonic() + MAX_SECONDS, True
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
            hint=f"templates may loop {MAX_LOOPS:,} times, nest {MAX_DEPTH} macro calls deep, build "
                 f"{MAX_TEXT:,} characters and run {MAX_SECONDS:g} s per message", kind="limit",
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
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, UnicodeError) as error:
        raise TemplateProblem(
            f"template failed{_label(source)}: {type(error).__name__}: {error}", file=source.file,
            line=_error_line(source), hint="check the expression on that line", kind="error",
        ) from None
    finally:
        if not outer:
            budget.active = False


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
