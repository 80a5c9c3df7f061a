"""What was validated is what is sent (issue 10, item 4), against a real loopback SMTP server.

The attack: during a rate-limited send, the template is swapped (for a symlink to a private key
outside the plan's folder, for another text, for a FIFO, its folder for a symlink...). Before,
template files were re-read when their mtime changed, so the key went out in most messages.
Now every file is read once at load, through one containment check, and messages are rendered
from that snapshot: no message may carry the new content, and the send stops with a message
naming the file (deliveries not sent stay queued, nothing is in doubt).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import campaign
import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.delivery.engine import SendEngine, SendError, SendStopped, dry_run, send_test_message
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.files import FileWatch

from send_helpers import write_plan

KEY = "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA-CANARY-5e1d"
NEW_TEXT = "URGENT: reset your password at http://phish.example/CANARY-new-text"
TEMPLATE = "Hello {{ recipient.name }},\n\nOrion {{ release.version }} is out.\n"
RECIPIENTS = 30


@pytest.fixture
async def server(tmp_path):
    server = LoopbackMailServer(maildir=tmp_path / "server-mail")
    await server.start_async()
    yield server
    await server.stop_async()


def templated_plan(folder: Path, port: int, *, rate: str = "10/s") -> Path:
    """The send helpers' plan, its `news` body in templates/t.md.j2, with notes; a key outside the folder."""
    plan_file = write_plan(folder, port, recipients=RECIPIENTS, rate=rate, concurrency=1)
    text = plan_file.read_text(encoding="utf-8")
    text = text.replace('body = "Hello {{ recipient.name }}"', 'template = "templates/t.md.j2"', 1)
    text = text.replace('version = "4.2.0"', 'version = "4.2.0"\nnotes = "CHANGES.md"', 1)
    plan_file.write_text(text, encoding="utf-8")
    (folder / "templates").mkdir()
    (folder / "templates" / "t.md.j2").write_text(TEMPLATE + "{{ notes }}\n", encoding="utf-8")
    (folder / "CHANGES.md").write_text("## 4.2.0\n- faster\n", encoding="utf-8")
    secret = folder.parent / "home" / ".ssh"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "id_ed25519").write_text(KEY + "\n", encoding="utf-8")
    (folder.parent / "elsewhere").mkdir(exist_ok=True)
    (folder.parent / "elsewhere" / "t.md.j2").write_text(KEY + "\n", encoding="utf-8")
    return plan_file


def replace(path: Path, make) -> None:
    """Swap `path` for something else in one rename, as an attacker (or a `git checkout`) would."""
    staged = path.with_name(path.name + ".new")
    make(staged)
    os.replace(staged, path)


def swap_symlink_to_key(folder: Path) -> None:
    replace(folder / "templates" / "t.md.j2", lambda p: p.symlink_to(folder.parent / "home" / ".ssh" / "id_ed25519"))


def swap_other_text(folder: Path) -> None:
    (folder / "templates" / "t.md.j2").write_text(NEW_TEXT + "\n", encoding="utf-8")


def swap_fifo(folder: Path) -> None:
    replace(folder / "templates" / "t.md.j2", lambda p: os.mkfifo(p))


def swap_folder_for_symlink(folder: Path) -> None:
    (folder / "templates").rename(folder / "templates.old")
    (folder / "templates").symlink_to(folder.parent / "elsewhere")


def swap_inside_symlink_to_other_text(folder: Path) -> None:
    (folder / "other.md.j2").write_text(NEW_TEXT + "\n", encoding="utf-8")
    replace(folder / "templates" / "t.md.j2", lambda p: p.symlink_to(folder / "other.md.j2"))


def swap_same_size_same_mtime(folder: Path) -> None:
    """Same length, mtime put back: only the ctime (and the bytes) tell."""
    path = folder / "templates" / "t.md.j2"
    before = path.stat()
    old = path.read_text(encoding="utf-8")
    path.write_text(old.replace("is out.", "is BAD."), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def swap_notes(folder: Path) -> None:
    (folder / "CHANGES.md").write_text(f"## 4.2.0\n- {NEW_TEXT}\n", encoding="utf-8")


def swap_members(folder: Path) -> None:
    with open(folder / "customers.csv", "a", encoding="utf-8") as handle:
        handle.write("Mallory,mallory@evil.example.com\n")


def swap_plan_file(folder: Path) -> None:
    plan_file = folder / "plan.toml"
    plan_file.write_text(plan_file.read_text(encoding="utf-8").replace(
        'subject = "Orion 4.2.0 is out"', f'subject = "{NEW_TEXT}"'), encoding="utf-8")


def swap_plan_file_for_fifo(folder: Path) -> None:
    replace(folder / "plan.toml", lambda p: os.mkfifo(p))


def remove_template(folder: Path) -> None:
    (folder / "templates" / "t.md.j2").unlink()


SWAPS = {
    "template -> symlink to a private key outside": (swap_symlink_to_key, "t.md.j2", "symlink"),
    "template rewritten with another text": (swap_other_text, "t.md.j2", "content is different"),
    "template -> FIFO": (swap_fifo, "t.md.j2", "FIFO"),
    "template's folder -> symlink to a folder outside": (swap_folder_for_symlink, "t.md.j2", "leads elsewhere"),
    "template -> symlink to another file inside": (swap_inside_symlink_to_other_text, "t.md.j2", "t.md.j2"),
    "template rewritten, same size, mtime put back": (swap_same_size_same_mtime, "t.md.j2", "content is different"),
    "template removed": (remove_template, "t.md.j2", "removed"),
    "release notes rewritten": (swap_notes, "CHANGES.md", "content is different"),
    "members list grows": (swap_members, "customers.csv", "content is different"),
    "plan file rewritten": (swap_plan_file, "plan.toml", "content is different"),
    "plan file -> FIFO": (swap_plan_file_for_fifo, "plan.toml", "FIFO"),
}


async def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def attack(tmp_path: Path, server: LoopbackMailServer, label: str, swap) -> tuple[str, list[str]]:
    """Run one swap in the middle of a send; returns (the stop message or "", problems)."""
    folder = tmp_path / label.replace(" ", "-").replace(">", "")
    plan = load_plan(templated_plan(folder, server.port))
    ledger = Ledger.open(plan.state_dir)
    before = len(server.messages)
    engine = SendEngine(plan, ledger, backoff_base=0.01)
    task = asyncio.ensure_future(engine.run())
    problems: list[str] = []
    try:
        await wait_for(lambda: len(server.messages) > before or task.done())
        swap(folder)
        try:
            await task
            stopped = ""
        except SendStopped as error:
            stopped = f"{error.message}\n{error.hint}"
        mine = server.messages[before:]
        for message in mine:
            if b"CANARY" in message.data or b"mallory" in message.data.lower():
                problems.append(f"a message carries the new content: {message.rcpt_tos}")
            if b"Orion 4.2.0 is out." not in message.data or b"faster" not in message.data:
                problems.append(f"a message is not the validated text: {message.rcpt_tos}")
        if any("mallory" in r for m in mine for r in m.rcpt_tos):
            problems.append("a recipient added after validation was mailed")
        counts = ledger.counts("4.2.0", "news")
        if not stopped:
            problems.append(f"the send did not stop ({len(mine)} sent)")
        if counts[L.ACCEPTED] != len(mine) or counts[L.IN_DOUBT] or counts[L.SENDING]:
            problems.append(f"ledger {dict(counts)} vs {len(mine)} at the server")
        if counts[L.ACCEPTED] + counts[L.QUEUED] != RECIPIENTS:
            problems.append(f"not every unsent delivery stayed queued: {dict(counts)}")
        run = ledger.runs("4.2.0")[-1]
        if stopped and not run.outcome.startswith("stopped: "):
            problems.append(f"run outcome {run.outcome!r}")
        return stopped, problems
    finally:
        if not task.done():
            engine.cancel()
            await asyncio.gather(task, return_exceptions=True)
        ledger.close()


@pytest.mark.campaign
async def test_files_swapped_during_a_rate_limited_send_never_reach_a_message_and_stop_the_send(tmp_path, server):
    failures = []
    for label, (swap, name, words) in SWAPS.items():
        stopped, problems = await attack(tmp_path, server, label, swap)
        if stopped and (name not in stopped or words not in stopped or "changed on disk" not in stopped
                        or "queued" not in stopped):
            problems.append(f"the stop does not say which file and what to do: {stopped!r}")
        failures += [f"{label}: {p}" for p in problems]
    campaign.record("input", "files swapped during a send", tried=len(SWAPS),
                    held=len(SWAPS) - len({f.split(':')[0] for f in failures}))
    assert failures == []


async def test_a_file_touched_but_unchanged_does_not_stop_the_send(tmp_path, server):
    plan = load_plan(templated_plan(tmp_path / "plan", server.port, rate="50/s"))
    ledger = Ledger.open(plan.state_dir)
    task = asyncio.ensure_future(SendEngine(plan, ledger).run())
    await wait_for(lambda: len(server.messages) > 0)
    template = tmp_path / "plan" / "templates" / "t.md.j2"
    template.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")  # an editor saving, no change
    os.utime(tmp_path / "plan" / "CHANGES.md")
    summary = await task
    assert summary.counts[L.ACCEPTED] == RECIPIENTS and summary.stopped is None
    ledger.close()


async def test_a_file_changed_before_the_send_starts_sends_nothing(tmp_path, server):
    plan = load_plan(templated_plan(tmp_path / "plan", server.port, rate=None))
    swap_symlink_to_key(tmp_path / "plan")
    ledger = Ledger.open(plan.state_dir)
    with pytest.raises(SendStopped) as stopped:
        await SendEngine(plan, ledger).run()
    assert "templates/t.md.j2" in stopped.value.message and server.messages == []
    assert ledger.counts("4.2.0", "news")[L.QUEUED] == RECIPIENTS
    # The dry run and the test send refuse too, and write or send nothing.
    with pytest.raises(SendError) as refused:
        dry_run(plan, ledger)
    assert "t.md.j2" in refused.value.message and not (plan.state_dir / "outbox").exists()
    with pytest.raises(SendError):
        await send_test_message(plan, ledger)
    assert server.messages == []
    # Loaded again, the plan refuses the symlink out of its folder at load.
    from relcomm_tui.plan import PlanError

    with pytest.raises(PlanError) as refused_load:
        load_plan(plan.path)
    assert refused_load.value.location.keypath == "communiques[0].template"
    ledger.close()


def test_the_watch_sees_each_swap_and_nothing_when_untouched(tmp_path):
    """The checks the engine makes, on their own: quick (lstat) and full (re-read) agree."""
    for label, (swap, name, _) in SWAPS.items():
        folder = tmp_path / label.replace(" ", "-").replace(">", "")
        plan = load_plan(templated_plan(folder, 2525))
        watch = FileWatch(plan)
        assert watch.quick() is None and watch.full() is None, label
        swap(folder)
        quick, full = FileWatch(plan).quick(), FileWatch(plan).full()
        assert full is not None and name in full.message, (label, full)
        assert quick is not None and name in quick.message, (label, quick)
        shutil.rmtree(folder, ignore_errors=True)
