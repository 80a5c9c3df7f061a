"""Markdown -> HTML for the HTML part of an email and for published pages.

Raw HTML in the source is not passed through (`html: False`): anything a template or the data
puts in, `<script>` included, ends up escaped text in the HTML.
"""

from __future__ import annotations

import html
import threading

from markdown_it import MarkdownIt

_LOCAL = threading.local()

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
</head>
<body>
{body}</body>
</html>
"""


def _parser() -> MarkdownIt:
    # One parser per thread: the preview renders in a worker thread while checks run in another.
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        parser.enable("table").enable("strikethrough")
        _LOCAL.parser = parser
    return parser


def to_html(markdown: str) -> str:
    """The HTML fragment for a Markdown text."""
    return _parser().render(markdown)


def html_document(markdown: str, title: str) -> str:
    """A minimal standalone HTML document for the Markdown text."""
    return PAGE.format(title=html.escape(title, quote=False), body=to_html(markdown))
