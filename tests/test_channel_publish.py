"""The publish channel on real files: the page and the index, atomic replacement (a failed or
killed rename leaves the old page), PUT and public-URL checks against a loopback server, dry run."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import textwrap
import time

from http_receiver import IntentLog, Reply, channel_plan, fake_render, job_for, receiver  # noqa: F401
from relcomm_tui.channels.publish import INDEX, PublishChannel, index_entries
from relcomm_tui.channels.webhook import RetryPolicy

FAST = RetryPolicy(max_attempts=2, connect_timeout=0.5, total_timeout=1, backoff_base=0.01, backoff_max=0.02)


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


async def publish(plan, render=None, **options):
    channel = PublishChannel(plan, render=render, policy=FAST, **options)
    await channel.open()
    try:
        job = IntentLog().attach(job_for(plan, "release-page"))
        return await channel.deliver(job), job
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
    assert 'href="4.2.0.html"' in index and ".tmp" not in index


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
    assert "No space left on device" in outcome.detail and outcome.intent_committed
    assert page.read_bytes() == before
    assert [p.name for p in page.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_process_killed_between_write_and_rename_leaves_the_old_page(tmp_path):
    plan_dir = tmp_path / "plan"
    plan = page_plan(plan_dir)
    page = plan_dir / "www" / "releases" / "4.2.0.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html><head><title>Old</title></head><body>the old page</body></html>")
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from http_receiver import channel_plan, fake_render, job_for
        from relcomm_tui.channels.publish import PublishChannel
        from relcomm_tui.plan.loader import load_plan

        def die(src, dst):  # the page is written and fsynced; the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)

        os.replace = die
        plan = load_plan({str(plan_dir / "plan.toml")!r})
        channel = PublishChannel(plan, render=fake_render(subject="New", html="<p>new</p>"))
        asyncio.run(channel.deliver(job_for(plan, "release-page")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert page.read_text() == "<html><head><title>Old</title></head><body>the old page</body></html>"
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
    assert len(receiver.requests_for("/missing.html")) == 2  # retried within the delivery


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
    outcome, job = await publish(plan, render=fake_render(subject="Orion", html="<p>hi</p>"), outbox=outbox,
                                 now=lambda: fixed)
    assert outcome.state == "accepted" and "dry run" in outcome.reply
    assert not (tmp_path / "www").exists()
    written = (outbox / "release-page" / f"{job.delivery_id}.html").read_text()
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
