"""The publish channel: write the release page into a folder such as an internal web site's root.

The page is the communique's Markdown, rendered to HTML by compose, in a clean standalone layout
(inline CSS, no scripts, no outside resources). It is written atomically (temp file in the same
folder, fsync, rename), so a reader, or a crash, never sees half a page: either the old page or
the new one. After each page the folder's `index.html` is regenerated, listing every release page
in it, newest first, with the titles taken from each page's <title>.

Rules for the folder, which may be a web site's root that others write too:
* relcomm replaces only files it wrote: a page or `index.html` that exists without relcomm's
  generator mark (`<meta name="generator" content="relcomm">`, in every page and index it writes),
  or that is a symlink, FIFO or anything but a regular file, is never overwritten: the delivery is
  refused (and validation says so, `path-unsafe`) naming the file and what to do. A page may not
  be called `index.html` itself.
* Index links are relative URLs made safe whatever a file is called: "./" then the file name
  percent-encoded (`javascript:x.html` becomes `./javascript%3Ax.html`), so no scheme, host or
  quote can appear in an href; titles are HTML-escaped.
* Scanning the folder reads only regular files, opened without following symlinks and without
  blocking (O_NOFOLLOW, O_NONBLOCK, then fstat): a FIFO, a device or a symlink named `*.html` (to
  /dev/stdin, to a secret) is skipped, never opened or listed.

Optionally the page is also PUT to `put_url` (a WebDAV folder, an object store); when
`public_url` is set, a GET of it must answer 2xx before the delivery is accepted. The receipt is
the file written (path, size, sha256) and the URL check. A PUT or GET that fails transiently
(or a public URL that 404s: the site may not have synced yet) is retried by the engine, with the
whole delivery (`[channels.publish]` sets concurrency, rate, max_attempts and timeout); writing
the same page again is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from ..compose.markdown import to_html
from ..compose.pages import GENERATOR, INDEX, NotOurs, not_ours, page_target, read_head
from ..common.errors import UserError
from ..common.files import atomic_write
from ..transport.http import HttpRequest, HttpSession, HttpTimeouts, SecretCache, check_url, redact
from .base import DeliveryJob, Intent, Outcome, Rehearsal, RenderJob, post_render, render_error_text, settings_from

if TYPE_CHECKING:
    from ..compose import Rendered
    from ..plan.model import Plan


STYLE = """
:root { color-scheme: light dark; --fg: #1d232b; --muted: #5b6675; --bg: #ffffff; --accent: #2e7d32; --rule: #d8dee6; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #9aa5b4; --bg: #14181d; --accent: #66bb6a; --rule: #2c333c; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header, main, footer { max-width: 46rem; margin: 0 auto; padding: 0 1.25rem; }
header { padding-top: 2rem; color: var(--muted); font-size: .9rem; }
header a { color: inherit; }
main { padding-bottom: 2rem; }
h1, h2, h3 { line-height: 1.25; }
h1 { font-size: 2rem; margin: .5rem 0 1rem; }
a { color: var(--accent); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { overflow-x: auto; padding: .75rem 1rem; border: 1px solid var(--rule); border-radius: 6px; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--rule); padding: .3rem .6rem; text-align: left; }
blockquote { margin: 0; padding-left: 1rem; border-left: 3px solid var(--rule); color: var(--muted); }
ul.releases { list-style: none; padding: 0; }
ul.releases li { padding: .6rem 0; border-bottom: 1px solid var(--rule); }
ul.releases time { color: var(--muted); font-size: .9rem; margin-left: .5rem; }
footer { color: var(--muted); font-size: .8rem; padding-bottom: 2rem; border-top: 1px solid var(--rule); padding-top: 1rem; }
""".strip()

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{generator}
<meta name="relcomm-release" content="{release}">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
<header>{header}</header>
<main>
{body}
</main>
<footer>{footer}</footer>
</body>
</html>
"""

_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def body_fragment(rendered_html: str | None, markdown: str) -> str:
    """The content to lay out: compose's HTML without its own <html>/<body>, or the Markdown rendered."""
    if rendered_html:
        found = _BODY.search(rendered_html)
        return (found.group(1) if found else rendered_html).strip()
    return to_html(markdown).strip()


def release_page(*, title: str, body_html: str, release: str, published: dt.datetime) -> str:
    stamp = published.astimezone(dt.timezone.utc)
    return PAGE.format(
        generator=GENERATOR, release=html.escape(release), title=html.escape(title), style=STYLE,
        header=f'<a href="./{INDEX}">All releases</a>',
        body=body_html,
        footer=f'Published <time datetime="{stamp.isoformat(timespec="seconds")}">'
               f'{stamp.strftime("%Y-%m-%d %H:%M UTC")}</time> by relcomm.',
    )


def _text(name: str) -> str:
    """A file name as text that encodes (a name that is not UTF-8 keeps a visible stand-in)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")




def _title(head: bytes, path: Path) -> str:
    match = _TITLE.search(head.decode("utf-8", "replace"))
    return html.unescape(" ".join(match.group(1).split())) if match else _text(path.stem)


def page_title(path: Path) -> str:
    """The <title> of a page (the first 64 KiB are enough), else its file name. Regular files only."""
    try:
        found = read_head(path)
    except OSError:  # NotRegular included: skipped, never opened
        found = None
    return _title(found[0], path) if found else _text(path.stem)


@dataclass(frozen=True)
class IndexEntry:
    name: str
    title: str
    modified: float


def index_entries(folder: Path) -> list[IndexEntry]:
    """Every page in the folder but the index (and temp files), newest first: regular files only,
    never a symlink, FIFO or device (skipped without being opened)."""
    entries = []
    for path in folder.glob("*.html"):
        if path.name == INDEX or path.name.startswith("."):
            continue
        try:
            found = read_head(path)
        except OSError:  # NotRegular included: skipped, never opened
            continue
        if found is None:
            continue  # removed meanwhile
        head, info = found
        entries.append(IndexEntry(path.name, _title(head, path), info.st_mtime))
    entries.sort(key=lambda e: (e.modified, e.name), reverse=True)
    return entries


def page_href(name: str) -> str:
    """A link to a file of the same folder that no file name can turn into anything else:
    "./" and the name percent-encoded (every byte but letters, digits and `-._~`), so no scheme
    (`javascript:`, `data:`), no host (`//evil`), no quote or `<` can appear."""
    return "./" + quote(os.fsencode(name), safe="")


def index_page(folder: Path, site_title: str = "Releases") -> str:
    items = []
    for entry in index_entries(folder):
        when = dt.datetime.fromtimestamp(entry.modified, dt.timezone.utc)
        items.append(f'<li><a href="{html.escape(page_href(entry.name))}">{html.escape(entry.title)}</a>'
                     f'<time datetime="{when.isoformat(timespec="seconds")}">{when.strftime("%Y-%m-%d")}</time></li>')
    listing = "\n".join(items) or "<li>No release pages yet.</li>"
    return PAGE.format(generator=GENERATOR, release="", title=html.escape(site_title), style=STYLE,
                       header="Release pages",
                       body=f"<h1>{html.escape(site_title)}</h1>\n<ul class=\"releases\">\n{listing}\n</ul>",
                       footer="Generated by relcomm.")






def write_index(folder: Path, site_title: str = "Releases") -> Path:
    target = folder / INDEX
    refused = not_ours(target)
    if refused is not None:
        raise refused
    atomic_write(target, index_page(folder, site_title).encode("utf-8"))
    return target








@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    sha256: str


# Two pages published into one folder at once must not race on the index (the later scan could
# be written first and lose the other page); within this process, one publish at a time.
_PUBLISHING = threading.Lock()


def publish_page(target: Path, page: bytes) -> Written:
    """Write the page atomically, then regenerate the folder's index. Raises NotOurs, before
    writing anything, when the page or the index exists and relcomm did not write it."""
    with _PUBLISHING:
        for existing in (target, target.parent / INDEX):  # again: the folder may have changed since validation
            refused = not_ours(existing)
            if refused is not None:
                raise refused
        atomic_write(target, page)
        write_index(target.parent)
    return Written(target, len(page), hashlib.sha256(page).hexdigest())


@dataclass(frozen=True)
class Page:
    """One delivery's page, ready to go: where it is written and PUT, and which URL must serve it."""

    page: bytes
    target: Path | None
    put_url: str | None
    public_url: str | None


class PublishChannel:
    """Write the release page (and the index) into the plan's `path`; optionally PUT it and check it is served."""

    name = "publish"

    def __init__(self, plan: "Plan", *, render: RenderJob | None = None, timeouts: HttpTimeouts | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, now=None, **_engine_options: object) -> None:
        self.plan = plan
        table = plan.channels.publish
        self.settings = settings_from(table)
        self._render = render or post_render(plan)
        self.http = HttpSession(timeouts or HttpTimeouts(total=float(table.timeout)), follow_redirects=True,
                                transport=transport)
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.secrets = SecretCache()

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

    def page(self, job: DeliveryJob, rendered: "Rendered") -> bytes:
        release = self.plan.release
        title = (rendered.subject or "").strip() or f"{release.name} {release.version}"
        body = body_fragment(rendered.html, rendered.text)
        return release_page(title=title, body_html=body, release=f"{release.name} {release.version}",
                            published=self._now()).encode("utf-8")

    async def prepare(self, job: DeliveryJob) -> Page:
        """Render the page and check where it goes; raises (RenderError, a UserError) when it cannot be published."""
        spec = job.communique.spec
        # Without `path` the page is only PUT (put_url): nothing is written here.
        target = page_target(self.plan, job.communique) if spec.path else None
        page = self.page(job, self._render(job))
        put_url = await self.secrets.value(spec.put_url, "put_url") if spec.put_url else None
        for url in (put_url, spec.public_url):
            problem = check_url(url) if url else None
            if problem:
                raise UserError(f"{redact(url)}: {problem}", "fix put_url / public_url in the communique")
        if target is None and not put_url:
            raise UserError("the communique has neither `path` nor `put_url`", "set path (a file) or put_url")
        return Page(page, target, put_url, spec.public_url)

    async def rehearse(self, job: DeliveryJob) -> Rehearsal:
        """The page as it would be published; nothing is written to `path` or PUT."""
        prepared = await self.prepare(job)
        where = f"{prepared.target} would be written" if prepared.target else "the page would be PUT"
        return Rehearsal("html", prepared.page, note=where)

    async def deliver(self, job: DeliveryJob, intent: Intent) -> Outcome:
        try:
            prepared = await self.prepare(job)
        except Exception as error:  # RenderError, PresetError: the communique cannot be published as written
            return Outcome("rejected", detail=f"not published: {render_error_text(error)}")
        await intent.commit()  # the ledger says `sending` before the page is written or PUT
        page, target, put_url, public_url = prepared.page, prepared.target, prepared.put_url, prepared.public_url
        words = []
        digest = hashlib.sha256(page).hexdigest()
        if target is not None:
            try:
                # The fsyncs may take a moment on a network file system: keep the loop free.
                written = await asyncio.to_thread(publish_page, target, page)
            except NotOurs as error:
                return Outcome("rejected", detail=f"not published: {error.message} ({error.hint})")
            except OSError as error:
                return Outcome("rejected", detail=f"cannot write {target}: {error.strerror or error}; "
                               "check that the folder exists and is writable")
            words.append(f"wrote {written.path} ({written.size} bytes, sha256 {digest[:16]}…)")
        if put_url:
            result = await self.http.send(HttpRequest(
                "PUT", put_url, {"Content-Type": "text/html; charset=utf-8", "Idempotency-Key": job.delivery_id},
                page), idempotent=True)
            result = self.secrets.hidden(result, put_url)  # a receiver may echo the URL's token
            words.append(f"PUT {redact(put_url)}: {result.answer.words}"
                         + ("" if target else f" ({len(page)} bytes, sha256 {digest[:16]}…)"))
            if result.state != "accepted":
                return Outcome(result.state, reply="; ".join(words), detail=result.detail,  # type: ignore[arg-type]
                               retry_after=result.answer.retry_after)
        if public_url:
            result = await self.http.send(HttpRequest("GET", public_url), also_retry=frozenset({404}), idempotent=True)
            words.append(f"GET {public_url}: {result.answer.status_line or result.answer.error}")
            if result.state != "accepted":
                # The file is written; the site does not serve it (yet): worth another try later.
                state = "transient" if result.state == "transient" or result.answer.status in (404, None) else "rejected"
                return Outcome(state, reply="; ".join(words),
                               detail="the page is written but the public URL does not serve it",
                               retry_after=result.answer.retry_after)
            served = hashlib.sha256(result.answer.body).hexdigest() == digest
            words.append("serves this page" if served else "serves a different page (a cache or a rewrite?)")
        return Outcome("accepted", reply="; ".join(words))
