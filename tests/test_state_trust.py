"""The state folder inside a plan folder is not trusted (issue 10, item 10).

A plan author can ship `.relcomm/` with a ledger saying "Bob already accepted" and sign-offs for
every group, or make `.relcomm` (or the ledger, or the lock) a symbolic link so relcomm chmods
and writes elsewhere. All of it on real files, links and a loopback SMTP server: the shipped
ledger is refused and Bob is still mailed; nothing is written where a link points; a folder owned
by another user is refused; a ledger that really is yours (an older relcomm's) can be adopted
after review, and the adoption is recorded.
"""

from __future__ import annotations

import os
import pty
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.store import state
from relcomm_tui.commands.main import main
from relcomm_tui.store.ledger import DeliveryIntent, Ledger, LedgerRefused
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.checklist import ChecklistScreen

from send_helpers import load, write_plan
from tui_helpers import orion, settle, text_of, user_config  # noqa: F401

BOB = "customer0@example.com"


@pytest.fixture
def server(tmp_path):
    with LoopbackMailServer(maildir=tmp_path / "server-mail") as running:
        yield running


def forge(state_dir: Path, plan, *, key_folder: Path | None, monkeypatch, schema: int | None = None) -> None:
    """What a plan author ships: a ledger saying Bob was sent the news, and every group reviewed.

    Made by relcomm itself under another user's settings folder (`key_folder`, i.e. another key),
    or, with `schema`, as an older relcomm made it (only the first migrations: no tag at all)."""
    version, digest = plan.release.version, plan.digest
    intents = [DeliveryIntent("news", BOB, "Customer 0 <customer0@example.com>", "customers", "email")]
    if schema is None:
        with monkeypatch.context() as patch:
            patch.setenv("RELCOMM_CONFIG_DIR", str(key_folder))
            with Ledger.open(state_dir) as ledger:
                ledger.ensure_deliveries(version, intents, domain="orion.example.com")
                (bob,) = ledger.deliveries(version)
                ledger.mark_sending([bob.id], ledger.start_run("send", version, digest, who="mallory"))
                ledger.mark_outcome(bob.id, L.ACCEPTED, "250 ok")
                for group in plan.groups:
                    ledger.set_reviewed(version, digest, group.id, True, "mallory@evil")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_dir / L.LEDGER_NAME)
    for script in L.MIGRATIONS[:schema]:
        db.executescript(script)
    db.execute(f"PRAGMA user_version={schema}")
    ident = L.delivery_id(version, "news", BOB)
    db.execute("INSERT INTO runs (started, who, host, mode, release_version, plan_digest, outcome) "
               "VALUES ('2024-01-01T00:00:00', 'me', 'old-host', 'send', ?, ?, 'finished')", (version, digest))
    db.execute("INSERT INTO deliveries (id, release_version, communique_id, recipient_key, recipient_display, group_id, "
               "channel, state, attempts, message_id, envelope_id, created, updated, run_id) "
               "VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?,1)",
               (ident, version, "news", BOB, "Customer 0 <customer0@example.com>", "customers", "email", L.ACCEPTED,
                f"<relcomm.{ident}.1@orion.example.com>", ident, "2024-01-01", "2024-01-01"))
    for group in plan.groups:
        db.execute("INSERT INTO signoffs VALUES (?,?,?,1,?,?)", (version, digest, group.id, "me@old-host", "2024-01-01"))
    db.commit()
    db.close()


def copies(server) -> dict[str, int]:
    found: dict[str, int] = {}
    for message in server.messages:
        for rcpt in message.rcpt_tos:
            found[rcpt] = found.get(rcpt, 0) + 1
    return found


def snapshot(path: Path) -> dict:
    """Every name, mode and content under `path` (the link's target), to prove nothing changed there."""
    found = {}
    for root, folders, files in os.walk(path):
        for name in [*folders, *files, "."]:
            entry = Path(root) / name
            info = os.lstat(entry)
            found[str(entry.relative_to(path))] = (stat.S_IMODE(info.st_mode), info.st_uid,
                                                   entry.read_bytes() if stat.S_ISREG(info.st_mode) else None)
    return found


# -- a ledger that came with the plan --------------------------------------------------------------


def test_a_ledger_shipped_with_the_plan_is_refused_and_bob_is_still_mailed(tmp_path, server, monkeypatch, capsys):
    authored = write_plan(tmp_path / "author" / "plan", server.port, recipients=3)
    forge(authored.parent / ".relcomm", load(authored), key_folder=tmp_path / "mallory-config", monkeypatch=monkeypatch)
    # The engineer clones the repository: a copy, owned by them, .relcomm and all.
    shutil.copytree(authored.parent, tmp_path / "clone")
    plan_file = tmp_path / "clone" / "plan.toml"

    for command in (["send", str(plan_file), "--yes"], ["status", str(plan_file)], ["report", str(plan_file)],
                    ["receipts", str(plan_file)], ["send", str(plan_file), "--dry-run"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "was not written by relcomm for you on this host; it may have come with the plan" in err, command
        assert "hint:" in err and "--state DIR" in err and "mv " in err and "relcomm adopt-state" in err
        assert "Traceback" not in err
    assert server.messages == []

    # The way on the hint gives: move it aside. Bob, whom the shipped ledger called sent, is mailed.
    (tmp_path / "clone" / ".relcomm").rename(tmp_path / "clone" / ".relcomm.untrusted")
    assert main(["send", str(plan_file), "--yes"]) == 0
    assert copies(server) == {BOB: 1, "customer1@example.com": 1, "customer2@example.com": 1}
    with Ledger.open(tmp_path / "clone" / ".relcomm") as ours:
        assert ours.signoffs("4.2.0") == []  # no review came along


async def test_a_shipped_ledger_gives_no_review_in_the_app(orion: Path, tmp_path, monkeypatch):
    plan = load(orion)
    forge(plan.state_dir, plan, key_folder=tmp_path / "mallory-config", monkeypatch=monkeypatch)
    app = build_app(orion)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChecklistScreen)
        assert app.ledger is None and screen.reviewed == set()
        problem = " ".join(text_of(screen.query_one("#problem")).split())
        assert "not written by relcomm for you" in problem and "--state DIR" in problem
        assert screen.send_lock is not None and "ledger cannot be used" in screen.send_lock


def test_an_untagged_ledger_is_refused_and_adopting_it_is_reviewed_and_recorded(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    plan = load(plan_file)
    forge(plan.state_dir, plan, key_folder=None, monkeypatch=None, schema=1)  # an older relcomm's ledger
    with pytest.raises(LedgerRefused, match="no mark of being written by relcomm for you"):
        Ledger.open(plan.state_dir)

    # Without a terminal and without --yes: shown, not adopted.
    assert main(["adopt-state", str(plan_file)]) == 2
    captured = capsys.readouterr()
    assert "runs: 1" in captured.out and "Customer 0 <customer0@example.com> (accepted)" in captured.out
    assert "sign-offs (groups marked reviewed): 2" in captured.out and "customers by me@old-host" in captured.out
    assert "needs --yes" in captured.err
    with pytest.raises(LedgerRefused):
        Ledger.open(plan.state_dir)

    # On a terminal, "n" keeps it refused; "y" adopts it.
    def adopt_on_a_terminal(answer: bytes) -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        process = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "adopt-state", str(plan_file)],
                                   stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        output = b""
        while b"[y/N]" not in output:
            chunk = os.read(leader, 1024)
            assert chunk, output
            output += chunk
        os.write(leader, answer)
        while True:
            try:
                chunk = os.read(leader, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        return process.wait(timeout=60), output

    code, output = adopt_on_a_terminal(b"n\n")
    assert code == 2 and b"not adopted: nothing was changed" in output
    with pytest.raises(LedgerRefused):
        Ledger.open(plan.state_dir)
    code, output = adopt_on_a_terminal(b"y\n")  # the subprocess uses this test's settings folder (inherited)
    assert code == 0 and b"adopted:" in output, output

    with Ledger.open(plan.state_dir) as ledger:
        assert ledger.schema_version == len(L.MIGRATIONS)
        assert ledger.reviewed_groups("4.2.0", plan.digest) == {"customers", "engineering"}
        ledger_db = sqlite3.connect(ledger.path)
        (adoption,) = state.adoptions(ledger_db)
        ledger_db.close()
    assert adoption["who"] and adoption["at"] and "no mark of being written" in adoption["reason"]
    assert "Customer 0 <customer0@example.com> (accepted)" in adoption["summary"]
    # Adopted means trusted: Bob, whom it says was sent the news, is not mailed again.
    assert main(["send", str(plan_file), "--yes"]) == 0
    assert copies(server) == {"customer1@example.com": 1}
    assert main(["adopt-state", str(plan_file), "--yes"]) == 0
    assert "already yours" in capsys.readouterr().out


def test_adopt_with_yes_and_a_ledger_holding_a_trigger_is_refused(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=1)
    plan = load(plan_file)
    forge(plan.state_dir, plan, key_folder=None, monkeypatch=None, schema=1)
    db = sqlite3.connect(plan.state_dir / L.LEDGER_NAME)
    db.execute("CREATE TRIGGER keep_sent AFTER UPDATE ON deliveries BEGIN "
               "UPDATE deliveries SET state='accepted' WHERE id=NEW.id; END")
    db.commit()
    db.close()
    assert main(["adopt-state", str(plan_file), "--yes"]) == 2
    assert "trigger keep_sent" in capsys.readouterr().err
    with pytest.raises(LedgerRefused):
        Ledger.open(plan.state_dir)


# -- links and owners -----------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """Where a link would lead: a folder of someone's files, 0755, one of them precious."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("do not touch\n")
    os.chmod(target / "precious.txt", 0o644)
    os.chmod(target, 0o755)
    return target


def all_entry_points(plan_file: Path, capsys, skip: tuple[str, ...] = ()) -> list[str]:
    errors = []
    for command in (["send", str(plan_file), "--yes"], ["send", str(plan_file), "--dry-run"],
                    ["status", str(plan_file)], ["report", str(plan_file)], ["receipts", str(plan_file)],
                    ["adopt-state", str(plan_file), "--yes"]):
        if command[0] in skip:
            continue
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and "hint:" in err, (command, err)
        errors.append(err)
    return errors


def test_a_state_folder_that_is_a_link_is_refused_and_nothing_is_written_there(tmp_path, server, elsewhere, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    (tmp_path / "plan" / ".relcomm").symlink_to(elsewhere)
    before = snapshot(elsewhere)
    for err in all_entry_points(plan_file, capsys):
        assert "the state folder" in err and "is a symbolic link" in err and "--state DIR" in err
    assert snapshot(elsewhere) == before and server.messages == []
    # --state naming the link itself is refused just the same.
    assert main(["send", str(plan_file), "--yes", "--state", str(tmp_path / "plan" / ".relcomm")]) == 2
    assert snapshot(elsewhere) == before


@pytest.mark.parametrize("name", [L.LEDGER_NAME, L.LEDGER_NAME + "-wal", L.LEDGER_NAME + "-journal", "send.lock"])
def test_a_ledger_or_lock_that_is_a_link_is_refused_and_its_target_is_untouched(tmp_path, server, elsewhere, capsys,
                                                                                 name):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    folder = tmp_path / "plan" / ".relcomm"
    if name == "send.lock":
        Ledger.open(folder).close()  # a real ledger of ours: only the lock is a link
    else:
        folder.mkdir()
    (folder / name).symlink_to(elsewhere / "precious.txt")
    before = snapshot(elsewhere)
    # status reads nothing but the ledger and the lock; adopt-state adopts only an existing ledger.
    # With no ledger there, status and report read nothing: they say "nothing sent" (and write nothing).
    skip = ("adopt-state",) + (("status", "report") if name.endswith(("-wal", "-journal")) else ())
    for err in all_entry_points(plan_file, capsys, skip):
        assert f"{folder / name} is a symbolic link" in err, err
    assert snapshot(elsewhere) == before and server.messages == []


@pytest.mark.parametrize("name", [L.LEDGER_NAME, "send.lock"])
def test_a_fifo_in_place_of_the_ledger_or_lock_is_refused_without_waiting(tmp_path, server, capsys, name):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=1)
    folder = tmp_path / "plan" / ".relcomm"
    if name == "send.lock":
        Ledger.open(folder).close()
    else:
        folder.mkdir()
    os.mkfifo(folder / name)
    for command in (["status", str(plan_file)], ["send", str(plan_file), "--yes"]):
        assert main(command) == 2
        assert f"{folder / name} is not a regular file" in capsys.readouterr().err
    assert server.messages == []


def test_a_hard_linked_ledger_is_refused(tmp_path, server, elsewhere, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=1)
    folder = tmp_path / "plan" / ".relcomm"
    folder.mkdir()
    os.link(elsewhere / "precious.txt", folder / L.LEDGER_NAME)
    before = snapshot(elsewhere)
    assert main(["send", str(plan_file), "--yes"]) == 2
    assert "has 2 names (hard links)" in capsys.readouterr().err
    assert snapshot(elsewhere) == before


def test_a_dry_run_outbox_that_is_a_link_is_refused(tmp_path, server, elsewhere, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    folder = tmp_path / "plan" / ".relcomm"
    Ledger.open(folder).close()
    (folder / "outbox").symlink_to(elsewhere)
    before = snapshot(elsewhere)
    assert main(["send", str(plan_file), "--dry-run"]) == 2
    assert "the dry-run outbox" in capsys.readouterr().err
    (folder / "outbox").unlink()
    (folder / "outbox").mkdir()
    (folder / "outbox" / "new").symlink_to(elsewhere)
    assert main(["send", str(plan_file), "--dry-run"]) == 2
    assert snapshot(elsewhere) == before


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a folder owned by another user needs root")


@needs_root
def test_a_state_folder_owned_by_another_user_is_refused(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=1)
    folder = tmp_path / "plan" / ".relcomm"
    folder.mkdir(mode=0o755)
    os.chown(folder, 65534, 65534)
    for err in all_entry_points(plan_file, capsys, skip=("report",)):  # no ledger there: nothing to report
        assert "belongs to" in err and "uid 65534" in err and "not to you" in err
    info = os.lstat(folder)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, 0o755) and os.listdir(folder) == []


@needs_root
def test_a_ledger_owned_by_another_user_is_refused(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=1)
    folder = tmp_path / "plan" / ".relcomm"
    Ledger.open(folder).close()
    os.chown(folder / L.LEDGER_NAME, 65534, 65534)
    assert main(["send", str(plan_file), "--yes"]) == 2
    assert f"the ledger {folder / L.LEDGER_NAME} belongs to" in capsys.readouterr().err
    assert server.messages == []


# -- what relcomm makes ---------------------------------------------------------------------------


def test_a_new_state_folder_is_private_ignored_by_git_and_tagged_with_a_private_key(tmp_path, user_config):
    folder = tmp_path / "plan" / ".relcomm"
    Ledger.open(folder).close()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    existing = tmp_path / "plan"  # e.g. --state . : a folder relcomm did not make gets no .gitignore
    Ledger.open(existing).close()
    assert not (existing / ".gitignore").exists()
    key = user_config / "keys" / "ledger.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    Ledger.open(folder).close()  # ours: opens again
    # A key others can read could forge a trusted ledger: refused until fixed.
    os.chmod(key, 0o644)
    with pytest.raises(L.LedgerError, match="can be read by others") as caught:
        Ledger.open(folder)
    assert "chmod 600" in caught.value.hint
    os.chmod(key, 0o600)
    # Another key (another user, or the key was replaced): the ledger is not recognised.
    key.write_text("0" * 64 + "\n")
    with pytest.raises(LedgerRefused, match="not written by relcomm for you"):
        Ledger.open(folder)


# -- the campaign row: every way a plan can ship state, tried on one plan -------------------------


def _shipped_ledger(folder: Path, plan_file: Path, elsewhere: Path, monkeypatch) -> None:
    forge(folder, load(plan_file), key_folder=elsewhere.parent / "mallory-config", monkeypatch=monkeypatch)


def _link(name: str):
    def make(folder: Path, plan_file: Path, elsewhere: Path, monkeypatch) -> None:
        if name == ".":
            folder.symlink_to(elsewhere)
            return
        Ledger.open(folder).close() if name in ("send.lock", "outbox") else folder.mkdir()
        (folder / name).symlink_to(elsewhere if name == "outbox" else elsewhere / "precious.txt")
    return make


def _fifo(name: str):
    def make(folder: Path, plan_file: Path, elsewhere: Path, monkeypatch) -> None:
        Ledger.open(folder).close() if name == "send.lock" else folder.mkdir()
        os.mkfifo(folder / name)
    return make


def _hard_link(folder: Path, plan_file: Path, elsewhere: Path, monkeypatch) -> None:
    folder.mkdir()
    os.link(elsewhere / "precious.txt", folder / L.LEDGER_NAME)


SHIPPED_STATE = {
    "a ledger written under another key (sent to Bob, every group signed off)": _shipped_ledger,
    "the state folder a link": _link("."),
    "the ledger a link": _link(L.LEDGER_NAME),
    "the ledger's -wal a link": _link(L.LEDGER_NAME + "-wal"),
    "the ledger's -journal a link": _link(L.LEDGER_NAME + "-journal"),
    "the send lock a link": _link("send.lock"),
    "the dry-run outbox a link": _link("outbox"),
    "a FIFO for the ledger": _fifo(L.LEDGER_NAME),
    "a FIFO for the send lock": _fifo("send.lock"),
    "the ledger a hard link to another file": _hard_link,
}


@pytest.mark.campaign
def test_campaign_state_shipped_with_a_plan_is_never_trusted(tmp_path, server, elsewhere, monkeypatch, capsys):
    """Each way a plan folder can ship its own state: `send` and `send --dry-run` (only it writes the outbox) refuse
    with a hint naming --state DIR, mails nobody and leaves the link's target as it was."""
    import campaign

    held, failed = 0, []
    for number, (what, make) in enumerate(SHIPPED_STATE.items()):
        plan_file = write_plan(tmp_path / f"plan{number}", server.port, recipients=2)
        make(plan_file.parent / ".relcomm", plan_file, elsewhere, monkeypatch)
        before, sent_before = snapshot(elsewhere), len(server.messages)
        # The outbox is only written by a dry run; everything else is refused by both.
        modes = (["--dry-run"],) if "outbox" in what else (["--yes"], ["--dry-run"])
        codes = [main(["send", str(plan_file), *mode]) for mode in modes]
        err = capsys.readouterr().err
        ok = (set(codes) == {2} and "--state DIR" in err and "Traceback" not in err
              and len(server.messages) == sent_before and snapshot(elsewhere) == before)
        held += ok
        if not ok:
            failed.append((what, codes, err[-300:]))
    campaign.record("input", "state: a ledger, lock or folder the plan shipped", tried=len(SHIPPED_STATE), held=held)
    assert failed == [] and server.messages == []
