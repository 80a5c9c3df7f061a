"""The publish channel on real files: the page and the index, atomic replacement (a failed or
killed rename leaves the old page), PUT and public-URL checks against a loopback server, dry run."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import subprocess
import sys
import textwrap
import time

import campaign
import pytest

from http_receiver import IntentLog, Reply, channel_plan, fake_render, job_for, receiver, rehearse  # noqa: F401
from relcomm_tui.channels.publish import INDEX, PublishChannel, index_entries
from relcomm_tui.transport.http import HttpTimeouts

FAST = HttpTimeouts(connect=0.5, total=1)


def page_plan(folder, extra=""):
    return channel_plan(folder, f"""
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        subject = "{{{{ release.name }}}} {{{{ release.version }}}} release notes"
        path = "www/releases/{{{{ release.version }}}}.html"
        body = "# Orion 4.2.0\\n\\nFaster search & <script>alert(1)</script>."
        {extra}
    """)


async def publish(plan, render=None, log=None, **options):
    channel = PublishChannel(plan, render=render, timeouts=FAST, **options)
    await channel.open()
    try:
        job = job_for(plan, "release-page")
        return await channel.deliver(job, (log or IntentLog()).intent()), job
    finally:
        await channel.close()


async def test_writes_the_page_and_an_index_of_all_releases(tmp_path):
    plan = page_plan(tmp_path)
    releases = tmp_path / "www" / "releases"
    releases.mkdir(parents=True)
    older = releases / "4.1.0.html"
    older.write_text("<html><head><title>Orion 4.1.0 release notes</title></head><body>old</body></html>")
    os.utime(older, (time.time() - 86400, time.time() - 86400))
    (releases / ".4.3.0.html.123.abc.tmp").write_text("half a page")  # a killed writer's leftover

    outcome, job = await publish(plan)  # the real compose renders the template

    page = releases / "4.2.0.html"
    assert outcome.state == "accepted", outcome
    text = page.read_text()
    digest = hashlib.sha256(page.read_bytes()).hexdigest()
    assert f"wrote {page}" in outcome.reply and digest[:16] in outcome.reply
    assert "<title>Orion 4.2.0 release notes</title>" in text
    assert "<style>" in text and "<link" not in text and "<script>" not in text  # standalone, no active content
    assert "<h1>Orion 4.2.0</h1>" in text
    assert "&lt;script&gt;" in text
    assert [e.name for e in index_entries(releases)] == ["4.2.0.html", "4.1.0.html"]
    index = (releases / INDEX).read_text()
    assert index.index("Orion 4.2.0 release notes") < index.index("Orion 4.1.0 release notes")
    assert 'href="./4.2.0.html"' in index and ".tmp" not in index


async def test_republishing_replaces_the_page_and_keeps_one_index_entry(tmp_path):
    plan = page_plan(tmp_path)
    await publish(plan, render=fake_render(subject="First", text="one", html="<p>one</p>"))
    outcome, _ = await publish(plan, render=fake_render(subject="Second", text="two", html="<p>two</p>"))
    releases = tmp_path / "www" / "releases"
    assert outcome.state == "accepted"
    assert "<p>two</p>" in (releases / "4.2.0.html").read_text()
    assert [e.title for e in index_entries(releases)] == ["Second"]
    assert sorted(p.name for p in releases.iterdir()) == ["4.2.0.html", "index.html"]


async def test_a_failing_rename_leaves_the_old_page_intact(tmp_path, monkeypatch):
    plan = page_plan(tmp_path)
    await publish(plan, render=fake_render(subject="Old", html="<p>old page</p>"))
    page = tmp_path / "www" / "releases" / "4.2.0.html"
    before = page.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    outcome, _ = await publish(plan, render=fake_render(subject="New", html="<p>new page</p>"))
    monkeypatch.undo()
    assert outcome.state == "rejected"
    assert "No space left on device" in outcome.detail
    assert page.read_bytes() == before
    assert [p.name for p in page.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_process_killed_between_write_and_rename_leaves_the_old_page(tmp_path):
    plan_dir = tmp_path / "plan"
    page_plan(plan_dir)
    page = plan_dir / "www" / "releases" / "4.2.0.html"
    page.parent.mkdir(parents=True)
    old = '<html><head><meta name="generator" content="relcomm"><title>Old</title></head><body>the old page</body></html>'
    page.write_text(old)  # a page relcomm published before (it replaces only its own)
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from http_receiver import channel_plan, fake_render, job_for
        from relcomm_tui.channels import Intent
        from relcomm_tui.channels.publish import PublishChannel
        from relcomm_tui.plan.loader import load_plan

        def die(src, dst):  # the page is written and fsynced; the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)

        os.replace = die
        plan = load_plan({str(plan_dir / "plan.toml")!r})
        channel = PublishChannel(plan, render=fake_render(subject="New", html="<p>new</p>"))
        asyncio.run(channel.deliver(job_for(plan, "release-page"), Intent.unrecorded()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert page.read_text() == old
    leftovers = [p for p in page.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")  # hidden, never served or indexed
    assert "<p>new</p>" in leftovers[0].read_text()
    assert [e.name for e in index_entries(page.parent)] == ["4.2.0.html"]


async def test_put_and_public_url_check(tmp_path, receiver):
    plan = page_plan(tmp_path, extra=f'put_url = "{receiver.url("/dav/4.2.0.html")}"\n'
                                     f'        public_url = "{receiver.url("/dav/4.2.0.html")}"')
    outcome, job = await publish(plan, render=fake_render(subject="Orion 4.2.0", html="<p>hello</p>"))
    page = (tmp_path / "www" / "releases" / "4.2.0.html").read_bytes()
    assert outcome.state == "accepted", outcome
    [put] = receiver.requests_for("/dav/4.2.0.html", "PUT")
    assert put.body == page and put.headers["idempotency-key"] == job.delivery_id
    assert len(receiver.requests_for("/dav/4.2.0.html", "GET")) == 1
    assert "PUT http://127.0.0.1" in outcome.reply and "HTTP 201" in outcome.reply
    assert "HTTP 200" in outcome.reply and "serves this page" in outcome.reply


async def test_public_url_that_does_not_serve_the_page_is_transient(tmp_path, receiver):
    plan = page_plan(tmp_path, extra=f'public_url = "{receiver.url("/missing.html")}"')
    outcome, _ = await publish(plan, render=fake_render(html="<p>x</p>"))
    assert outcome.state == "transient"
    assert "HTTP 404" in outcome.reply and "does not serve it" in outcome.detail
    assert (tmp_path / "www" / "releases" / "4.2.0.html").exists()
    assert len(receiver.requests_for("/missing.html")) == 1  # one try per delivery: retries are the engine's


async def test_through_the_engine_a_page_not_served_yet_is_retried_per_the_plan(tmp_path, receiver):
    """Publish used to retry 3 times inside one delivery, under the engine's 5 tries: up to 15
    GETs with two backoffs. Now the engine alone retries, [channels.publish] max_attempts times."""
    from relcomm_tui.store import ledger as L
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger

    receiver.script("/site/4.2.0.html", Reply(404, "not synced yet"))
    receiver.serve_directory("/site", tmp_path / "www" / "releases")
    plan = page_plan(tmp_path, extra=f'public_url = "{receiver.url("/site/4.2.0.html")}"')
    ledger = Ledger.open(plan.state_dir)
    await SendEngine(plan, ledger, backoff_base=0.01).run()
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.ACCEPTED and record.attempts == 2 and "serves this page" in record.reply
    assert len(receiver.requests_for("/site/4.2.0.html", "GET")) == 2

    ledger.close()
    receiver.answer("/gone/4.2.0.html", Reply(404, "gone"))
    plan = channel_plan(tmp_path / "two", f"""
        [channels.publish]
        max_attempts = 2

        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        path = "www/releases/{{{{ release.version }}}}.html"
        public_url = "{receiver.url("/gone/4.2.0.html")}"
        body = "# Orion"
    """)
    ledger = Ledger.open(plan.state_dir)
    await SendEngine(plan, ledger, backoff_base=0.01).run()
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.DEFERRED and "gave up after 2 attempt" in record.reply
    assert len(receiver.requests_for("/gone/4.2.0.html", "GET")) == 2
    ledger.close()


async def test_a_put_refused_is_rejected_with_its_words(tmp_path, receiver):
    receiver.answer("/dav/4.2.0.html", Reply(403, "read-only share"))
    plan = page_plan(tmp_path, extra=f'put_url = "{receiver.url("/dav/4.2.0.html")}"')
    outcome, _ = await publish(plan, render=fake_render(html="<p>x</p>"))
    assert outcome.state == "rejected"
    assert "HTTP 403" in outcome.reply and "read-only share" in outcome.reply


async def test_a_put_url_secret_echoed_by_the_receiver_is_never_kept(tmp_path, receiver, monkeypatch):
    token = "dav-token-5f1c9e2a7b3d"
    path = f"/dav/{token}/4.2.0.html"
    receiver.answer(path, Reply(404, f"Cannot PUT {path}"))  # an Express-style echo of the request
    monkeypatch.setenv("RELCOMM_PUT_URL", receiver.url(path))
    plan = page_plan(tmp_path, extra='put_url = { env = "RELCOMM_PUT_URL" }')
    outcome, _ = await publish(plan, render=fake_render(html="<p>x</p>"))
    assert len(receiver.requests_for(path, "PUT")) == 1  # the secret was used
    assert outcome.state == "rejected" and "HTTP 404" in outcome.reply
    assert token not in outcome.reply + outcome.detail and "(secret)" in outcome.reply


async def test_unwritable_folder_is_rejected_with_a_hint(tmp_path):
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        path = "plan.toml/4.2.0.html"
        body = "x"
    """)
    outcome, _ = await publish(plan, render=fake_render(html="<p>x</p>"))
    assert outcome.state == "rejected"
    assert "cannot write" in outcome.detail and "writable" in outcome.detail


async def test_dry_run_writes_the_page_to_the_outbox_only(tmp_path):
    plan = page_plan(tmp_path)
    outbox = tmp_path / "state" / "outbox"
    fixed = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    job = job_for(plan, "release-page")
    channel = PublishChannel(plan, render=fake_render(subject="Orion", html="<p>hi</p>"), now=lambda: fixed)
    rehearsal = await channel.rehearse(job)
    assert rehearsal.note.endswith("4.2.0.html would be written")
    written = (await rehearse(channel, job, outbox)).read_text()
    assert not (tmp_path / "www").exists()
    assert written == (outbox / "release-page" / f"{job.delivery_id}.html").read_text()
    assert "<p>hi</p>" in written and "2026-11-26 12:00 UTC" in written


async def test_put_only_publishes_without_a_local_file(tmp_path, receiver):
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        subject = "Orion 4.2.0"
        put_url = "{receiver.url('/site/4.2.0.html')}"
        body = "x"
    """)
    outcome, _ = await publish(plan, render=fake_render(subject="Orion 4.2.0", html="<p>only remote</p>"))
    assert outcome.state == "accepted", outcome
    assert b"<p>only remote</p>" in receiver.stored("/site/4.2.0.html")
    assert "sha256" in outcome.reply and "wrote" not in outcome.reply
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]


# -- issue 10, item 11: the index is safe to serve, and relcomm replaces only what it wrote ---------

from html.parser import HTMLParser  # noqa: E402
from urllib.parse import unquote, urljoin, urlsplit  # noqa: E402

from relcomm_tui.checks.rules import run_checks  # noqa: E402

HOSTILE_NAMES = [
    "javascript:alert(1).html", "JaVaScRiPt:alert(document.cookie).html", "data:text,x.html",
    "vbscript:msgbox(1).html", '" onmouseover="alert(1) x.html', "' onfocus='alert(1)'.html",
    "<img src=x onerror=alert(1)>.html", "a b c.html", "ünïcödé-‮lmth.exe.html", "?q=1.html", "#top.html",
    "%2e%2e%2fescape.html", "\\\\evil.example\\x.html", "\tjavascript:tab.html", " javascript:space.html",
    "&#106;avascript:x.html", "mailto:a@b.html",
]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.hrefs += [value for name, value in attrs if name == "href"]


def _hrefs(index_html: str) -> list[str]:
    parser = _Links()
    parser.feed(index_html)
    return parser.hrefs


@pytest.mark.campaign
async def test_index_links_are_relative_percent_encoded_urls_whatever_a_page_is_called(tmp_path):
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        subject = "Orion"
        path = "www/javascript:alert(1).html"
        body = "x"
    """)
    www = tmp_path / "www"
    www.mkdir()
    names = [n for n in HOSTILE_NAMES if n != "javascript:alert(1).html"]
    for name in names:
        (www / name).write_text(f"<title>{name}</title>")
    os.close(os.open(os.fsencode(www) + b"/not-utf8-\xff\xfe.html", os.O_CREAT | os.O_WRONLY, 0o644))
    outcome, _ = await publish(plan)
    assert outcome.state == "accepted", outcome
    index = (www / INDEX).read_text()
    hrefs = _hrefs(index)
    site = "https://releases.example.com/www/"
    assert len(hrefs) == len(names) + 2 + 0, hrefs  # every page, and no other link
    for href in hrefs:
        assert href.startswith("./") and ":" not in href and "//" not in href and "\\" not in href, href
        assert all(c.isalnum() and c.isascii() or c in "%._~-/" for c in href), href
        resolved = urlsplit(urljoin(site, href))
        assert (resolved.scheme, resolved.netloc) == ("https", "releases.example.com"), href
        assert resolved.path.startswith("/www/") and "/" not in resolved.path[len("/www/"):], href
        assert not resolved.query and not resolved.fragment, href
    shown = {unquote(h[2:], errors="surrogateescape") for h in hrefs}
    assert set(names) | {"javascript:alert(1).html", os.fsdecode(b"not-utf8-\xff\xfe.html")} == shown
    assert 'href="javascript' not in index.lower() and "<img" not in index and "onmouseover=\"" not in index
    assert "./javascript%3Aalert%281%29.html" in hrefs
    campaign.record("input", "publish: hostile page names in the index", tried=len(hrefs), held=len(hrefs))


def _handwritten(folder, name=INDEX, text="<html><title>Our site</title><body>hand-written, keep me</body></html>"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return (folder / name).read_bytes()


async def test_a_hand_written_index_is_never_replaced_and_nothing_is_written(tmp_path):
    site = tmp_path / "srv" / "www"
    before = _handwritten(site)
    plan = channel_plan(tmp_path / "plan", f"""
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        subject = "Orion"
        path = "{site}/{{{{ release.version }}}}.html"
        body = "x"
    """)
    [finding] = [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "path-unsafe"]
    assert str(site / INDEX) in finding.message and "did not write" in finding.message, finding.message
    assert "move it away" in finding.hint and finding.location.line is not None
    outcome, _ = await publish(plan)
    assert outcome.state == "rejected" and str(site / INDEX) in outcome.detail, outcome
    assert (site / INDEX).read_bytes() == before
    assert sorted(p.name for p in site.iterdir()) == [INDEX]  # the page was not written either


async def test_an_index_relcomm_wrote_is_replaced_and_one_that_lost_its_mark_is_not(tmp_path):
    plan = page_plan(tmp_path)
    releases = tmp_path / "www" / "releases"
    first, _ = await publish(plan, render=fake_render(subject="First", html="<p>1</p>"))
    assert first.state == "accepted"
    again, _ = await publish(plan, render=fake_render(subject="Again", html="<p>2</p>"))
    assert again.state == "accepted" and "Again" in (releases / INDEX).read_text()
    (releases / INDEX).write_text("<title>edited by hand, the generator line removed</title>")
    edited = (releases / INDEX).read_bytes()
    refused, _ = await publish(plan, render=fake_render(subject="Third", html="<p>3</p>"))
    assert refused.state == "rejected" and "did not write" in refused.detail
    assert (releases / INDEX).read_bytes() == edited and "<p>2</p>" in (releases / "4.2.0.html").read_text()


async def test_a_page_relcomm_did_not_write_is_not_replaced(tmp_path):
    plan = page_plan(tmp_path)
    releases = tmp_path / "www" / "releases"
    before = _handwritten(releases, "4.2.0.html", "<title>the site's own 4.2.0 page</title>")
    outcome, _ = await publish(plan)
    assert outcome.state == "rejected" and str(releases / "4.2.0.html") in outcome.detail
    assert (releases / "4.2.0.html").read_bytes() == before and not (releases / INDEX).exists()


async def test_an_index_or_page_that_is_a_symlink_or_fifo_is_refused_not_followed(tmp_path):
    for case, make in (("index symlink", lambda d: (d / INDEX).symlink_to(tmp_path / "precious.html")),
                       ("page symlink", lambda d: (d / "4.2.0.html").symlink_to(tmp_path / "precious.html")),
                       ("index fifo", lambda d: os.mkfifo(d / INDEX))):
        folder = tmp_path / case.replace(" ", "-")
        precious = tmp_path / "precious.html"
        precious.write_text('<meta name="generator" content="relcomm"> not to be replaced through a link')
        plan = page_plan(folder)
        releases = folder / "www" / "releases"
        releases.mkdir(parents=True)
        make(releases)
        outcome, _ = await asyncio.wait_for(publish(plan), 60)
        assert outcome.state == "rejected", (case, outcome)
        assert ("a symlink" if "symlink" in case else "a FIFO") in outcome.detail, (case, outcome.detail)
        assert "not to be replaced" in precious.read_text(), case


async def test_a_page_may_not_be_called_index_html(tmp_path):
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        subject = "Orion"
        path = "www/INDEX.html"
        body = "x"
    """)
    assert [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "path-unsafe"]
    outcome, _ = await publish(plan)
    assert outcome.state == "rejected" and "index" in outcome.detail and not (tmp_path / "www").exists()


def test_page_and_email_render_markdown_the_same_way():
    """One Markdown setup: a page body written in Markdown shows strikethrough and tables as the email does."""
    from relcomm_tui.channels.publish import body_fragment
    from relcomm_tui.compose.markdown import to_html

    text = "~~old~~ new\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    page = body_fragment(None, text)
    assert "<s>old</s>" in page and "<table>" in page
    assert page == to_html(text).strip()
