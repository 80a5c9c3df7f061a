"""Text for a terminal: the one function every text relcomm prints or shows goes through.

Plans, servers and inbound reports are not trusted, and their words reach the engineer's
terminal: a group name, a recipient, a subject, a finding that quotes a value, an SMTP or HTTP
reply, a path. A terminal acts on some characters instead of showing them: ESC starts sequences
that set the window title (`ESC ] 0 ; ... BEL`), move the cursor or clear the screen, rewrite
lines already printed, or (on some terminals) write files or answer back keystrokes; C1 controls
such as U+009B do the same in one character; CR returns to the start of the line, so a later
text overwrites what came first; bidi overrides (U+202E) and zero-width characters make text
read differently from what it is. `visible()` turns each of them into something seen:

* C0 controls and DEL become their Unicode control pictures (ESC -> `␛`, BEL -> `␇`,
  NUL -> `␀`, CR -> `␍`, DEL -> `␡`): one cell wide, tables stay aligned;
* every other character that is not printable - C1 controls, format characters (bidi embeddings,
  overrides and isolates, LRM/RLM, zero-width space/joiners, BOM, soft hyphen, tag characters),
  line and paragraph separators, lone surrogates (undecodable file names), private-use and
  unassigned code points - becomes its escape, `\\x9b`, `\\u202e`, `\\U000e0041`;
* TAB and LF are explicit choices of the caller: by default they become `␉` and `␊` too (a value
  printed inside a line must not break it, nor start a forged line of its own); `tabs=True`
  keeps TAB, `newlines=True` keeps LF (and turns CR LF into LF) for text that is multi-line by
  design (a rendered report, a template's text in the preview).

The result holds printable characters only (plus the kept TAB/LF), so `visible(visible(x))
== visible(x)`, and it always encodes to UTF-8. Stdlib only: the CLI commands, the report and the
app all import it (nothing below `tui/` may import Textual). `PrintableStream` applies it to a
whole output stream as a safety net under the explicit calls (see `cli.main`).
Tests: tests/test_terminal_text.py.
"""

from __future__ import annotations

import io
import unicodedata
from functools import lru_cache
from typing import TextIO

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}
_SAFE_ASCII = frozenset(range(0x20, 0x7F))
# Categories a terminal does not simply draw: controls, format characters, surrogates, private use,
# unassigned, and the line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def _shown(char: str) -> str:
    code = ord(char)
    if code in _PICTURES:
        return _PICTURES[code]
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: object, *, tabs: bool = False, newlines: bool = False) -> str:
    """`text` (str() of anything; None is "") with every character a terminal would act on, or
    that would read as something else, made visible. See the module's rules."""
    if text is None:
        return ""
    text = text if isinstance(text, str) else str(text)
    if text.isascii() and text.isprintable():  # the usual case (all in _SAFE_ASCII), in C, without a copy
        return text
    if newlines:
        text = text.replace("\r\n", "\n")
    out = []
    for char in text:
        if (char == "\t" and tabs) or (char == "\n" and newlines):
            out.append(char)
        elif ord(char) in _SAFE_ASCII:
            out.append(char)
        else:
            out.append(_shown(char))
    return "".join(out)


def visible_lines(text: object) -> str:
    """Multi-line text as a terminal should show it: TAB and LF kept, everything else `visible`."""
    return visible(text, tabs=True, newlines=True)


class PrintableStream(io.TextIOBase):
    """A text stream that writes everything through `visible`, keeping TAB, LF and CR (the layout
    relcomm's own output uses: a progress line rewritten in place). The safety net under the
    explicit `visible()` calls, which also make TAB, LF and CR inside a value visible."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(_visible_keeping_cr(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (ValueError, OSError, AttributeError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def _visible_keeping_cr(text: str) -> str:
    if "\r" not in text:
        return visible(text, tabs=True, newlines=True)
    return "\r".join(visible(part, tabs=True, newlines=True) for part in text.split("\r"))
