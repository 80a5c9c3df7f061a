"""A send lock held by another process is never taken over, whatever its file says (issue 15).

The old lock judged staleness from the file's text (pid, host): a holder on another host, or a
pid that looked dead here, was "stale" and taken over. The kernel lock decides now; these tests
write the text a takeover bug would believe (another host's name, a dead pid, garbage) into the
file of a lock a live child process holds, and require a refusal. With nobody holding it, the
same files must not stop a sender (the text never decides either way).

Seen to fail by hand with `try_acquire` deciding from the file (taking the lock when the recorded
host is not this one, or the recorded pid is not alive).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relcomm_tui.store.lock import LOCK_NAME, SendLock, SendLockedError, lock_holder, lock_is_free

DEAD_PID = 2**22 + 12345  # above the default pid_max: never a live process

NOTES = {
    "another host": {"pid": 4242, "host": "build-07.elsewhere.example", "since": "2026-01-01T00:00:00+00:00"},
    "a dead pid on this host": {"pid": DEAD_PID, "host": os.uname().nodename, "since": "2026-01-01T00:00:00+00:00"},
    "garbage": "not json at all",
}


def note_text(note) -> str:
    return note if isinstance(note, str) else json.dumps(note)


def bare_holder(state_dir: Path, note) -> subprocess.Popen:
    """A live process holding an exclusive flock on send.lock whose text is `note` (as a sender on
    another host, or one the old code would think dead, would have left it)."""
    code = ("import fcntl, os, sys\n"
            f"os.makedirs({str(state_dir)!r}, mode=0o700, exist_ok=True)\n"
            f"fd = os.open({str(state_dir / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"os.ftruncate(fd, 0); os.pwrite(fd, {note_text(note).encode()!r}, 0)\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held", f"the holder died (exit {child.wait()})"
    return child


@pytest.mark.parametrize("note", NOTES.values(), ids=NOTES.keys())
def test_a_lock_held_by_a_live_process_is_refused_whatever_its_file_says(tmp_path: Path, note):
    child = bare_holder(tmp_path, note)
    try:
        lock = SendLock(tmp_path)
        assert lock.try_acquire() is False
        with pytest.raises(SendLockedError) as caught:
            lock.acquire(grace=0)
        assert not lock.held
        assert "another relcomm process is sending this plan" in caught.value.message
        assert not lock_is_free(tmp_path) and lock_holder(tmp_path) is not None
        # The holder's file is left exactly as it wrote it: nothing overwrote or removed it.
        assert (tmp_path / LOCK_NAME).read_text() == note_text(note)
    finally:
        child.kill()
        child.wait()


def test_the_refusal_names_the_other_host_the_file_gives(tmp_path: Path):
    child = bare_holder(tmp_path, NOTES["another host"])
    try:
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire(grace=0)
        assert "PID 4242 on host build-07.elsewhere.example" in caught.value.message
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("note", NOTES.values(), ids=NOTES.keys())
def test_a_lock_file_nobody_holds_does_not_stop_a_sender_whatever_it_says(tmp_path: Path, note):
    with SendLock(tmp_path):
        pass
    (tmp_path / LOCK_NAME).write_text(note_text(note))
    assert lock_is_free(tmp_path)
    with SendLock(tmp_path) as lock:
        assert lock.held and lock_holder(tmp_path).pid == os.getpid()
