"""Jinja2 templating for communiques: sandboxed, strict, cached, with errors that point at a line.

A template is compiled once per source text; a template *file* is re-read only when its
mtime or size changes, so 10,000 renders cost one read while the live preview still sees edits.
"""

from __future__ import annotations

import difflib

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing


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


def _finalize(value: Any) -> Any:
    # An empty CSV cell or an absent phone renders as nothing, never as "None".
    return "" if value is None else value


ENVIRONMENT = SandboxedEnvironment(
    undefined=_Undefined,
    autoescape=False,  # the source is Markdown/text; the Markdown -> HTML step escapes
    keep_trailing_newline=True,
    finalize=_finalize,
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
    try:
        return template.render(context)
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
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise TemplateProblem(
            f"template failed{_label(source)}: {type(error).__name__}: {error}", file=source.file,
            line=_error_line(source), hint="check the expression on that line", kind="error",
        ) from None


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
