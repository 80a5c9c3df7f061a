"""The send lock's refusal says exactly who holds it, and the async acquire used by the engine and
the app holds the same rules as the sync one (issue 15: mutants of store/lock.py that survived the
first mutation run: message and hint text, the holder and path on the error, `since`, the async
acquire, the look on a folder never sent from, the name cleared on release)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_guard_lock import bare_holder
from test_send_lock import holder, stop, wait_held

from relcomm_tui.store.lock import LOCK_NAME, LockHolder, SendLock, SendLockedError, lock_holder, lock_is_free

HINT = ("wait for it to finish (relcomm status PLAN shows where it stands), or stop that process; the lock is "
        "released by the system the moment it ends, and a run started then continues where it stopped")
NOTE = {"pid": 4242, "host": "build-07.elsewhere.example", "since": "2026-12-02T16:00:00+00:00"}


def test_the_refusal_carries_the_holder_the_path_and_the_exact_words(tmp_path: Path):
    child = bare_holder(tmp_path, NOTE)
    try:
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire(grace=0)
        error = caught.value
        assert error.holder == LockHolder(4242, "build-07.elsewhere.example", "2026-12-02T16:00:00+00:00")
        assert error.path == tmp_path / LOCK_NAME
        assert error.message == str(error) == ("not sending: another relcomm process is sending this plan: PID 4242 "
                                               "on host build-07.elsewhere.example since 2026-12-02T16:00:00+00:00")
        assert error.hint == HINT
    finally:
        child.kill()
        child.wait()


def test_a_holder_that_has_not_written_its_name_is_described_as_such(tmp_path: Path):
    child = bare_holder(tmp_path, "")
    try:
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire(grace=0)
        assert caught.value.holder == LockHolder(None, None, None)
        assert caught.value.message == ("not sending: another relcomm process is sending this plan "
                                        "(it has not said which yet)")
    finally:
        child.kill()
        child.wait()


def test_a_folder_never_sent_from_is_free_and_has_no_holder(tmp_path: Path):
    assert lock_is_free(tmp_path / "never-made") is True
    assert lock_holder(tmp_path / "never-made") is None
    tmp_path.chmod(0o700)
    assert lock_is_free(tmp_path) is True and lock_holder(tmp_path) is None
    assert not (tmp_path / LOCK_NAME).exists()  # a look creates nothing


def test_the_name_is_written_while_held_and_cleared_on_release(tmp_path: Path):
    lock = SendLock(tmp_path)
    lock.acquire(grace=0)
    note = json.loads((tmp_path / LOCK_NAME).read_text())
    assert note["pid"] == os.getpid() and note["host"] and note["since"]
    assert lock_holder(tmp_path) == LockHolder(os.getpid(), note["host"], note["since"])
    assert (os.stat(tmp_path / LOCK_NAME).st_mode & 0o777) == 0o600
    lock.release()
    assert (tmp_path / LOCK_NAME).read_bytes() == b""  # no stale name left; the file stays
    assert not lock.held
    lock.release()  # twice is harmless


async def test_the_async_acquire_takes_a_free_lock_and_refuses_a_held_one(tmp_path: Path):
    lock = SendLock(tmp_path)
    await lock.acquire_async(grace=0)
    assert lock.held and lock_holder(tmp_path).pid == os.getpid()
    lock.release()

    child = bare_holder(tmp_path, NOTE)
    try:
        other = SendLock(tmp_path)
        with pytest.raises(SendLockedError) as caught:
            await other.acquire_async(grace=0)
        assert not other.held and caught.value.holder.pid == 4242
        assert caught.value.path == tmp_path / LOCK_NAME
    finally:
        child.kill()
        child.wait()
    await other.acquire_async(grace=0)  # the holder's end frees it at once
    assert other.held
    other.release()


async def test_the_async_acquire_waits_out_a_look_without_refusing(tmp_path: Path):
    with SendLock(tmp_path):
        pass
    looker = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys\n"
                               f"fd = os.open({str(tmp_path / LOCK_NAME)!r}, os.O_RDONLY)\n"
                               "fcntl.flock(fd, fcntl.LOCK_SH)\nprint('held', flush=True)\nsys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert looker.stdout.readline().strip() == "held"
        lock = SendLock(tmp_path)
        assert not lock.try_acquire()
        threading.Timer(0.2, looker.stdin.close).start()
        await asyncio.wait_for(lock.acquire_async(grace=0), 30)  # only a look held it: never refused
        assert lock.held
        lock.release()
    finally:
        looker.kill()
        looker.wait()


# -- a sender that finishes within the grace (mutation survivors of acquire / acquire_async) ------


def test_a_send_that_ends_within_the_grace_lets_the_next_sender_go_instead_of_refusing_it(tmp_path: Path):
    child = holder(tmp_path)  # a real sender, about to finish
    try:
        wait_held(child)
        threading.Timer(0.3, child.stdin.close).start()  # the holder's send ends in 0.3 s, well inside the grace
        lock = SendLock(tmp_path)
        lock.acquire(grace=60)  # refused at once if the grace were not waited out
        assert lock.held
        lock.release()
    finally:
        stop(child)


async def test_the_async_acquire_also_waits_out_a_sender_that_ends_within_the_grace(tmp_path: Path):
    child = holder(tmp_path)
    try:
        wait_held(child)
        threading.Timer(0.3, child.stdin.close).start()
        lock = SendLock(tmp_path)
        await asyncio.wait_for(lock.acquire_async(grace=60), 60)
        assert lock.held
        lock.release()
    finally:
        stop(child)


# -- a lock or state folder that is not the user's own, as each entry point words it ---------------


def _refusal(call) -> tuple[str, str]:
    from relcomm_tui.store.states import LedgerRefused

    with pytest.raises(LedgerRefused) as caught:
        call()
    return str(caught.value), caught.value.hint


@pytest.mark.parametrize("look", ["lock_is_free", "lock_holder", "try_acquire"])
def test_a_linked_send_lock_is_refused_by_name_with_the_way_on(tmp_path: Path, look: str):
    import shlex

    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_text("precious\n")
    (state_dir / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    call = {"lock_is_free": lambda: lock_is_free(state_dir), "lock_holder": lambda: lock_holder(state_dir),
            "try_acquire": lambda: SendLock(state_dir).try_acquire()}[look]
    message, hint = _refusal(call)
    assert message.startswith(f"the send lock {state_dir / LOCK_NAME} is a symbolic link")
    assert f"mv {shlex.quote(str(state_dir))} " in hint and "--state DIR" in hint   # the state folder, named
    assert (tmp_path / "elsewhere").read_text() == "precious\n"


@pytest.mark.parametrize("look", ["lock_is_free", "lock_holder"])
def test_a_linked_state_folder_is_refused_by_name_when_the_lock_is_looked_at(tmp_path: Path, look: str):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real")
    call = {"lock_is_free": lambda: lock_is_free(tmp_path / "state"), "lock_holder": lambda: lock_holder(tmp_path / "state")}[look]
    message, hint = _refusal(call)
    assert message.startswith(f"the state folder {tmp_path / 'state'} is a symbolic link") and "--state DIR" in hint
    assert f"mv {tmp_path / 'state'} {tmp_path / 'state'}.untrusted" in hint  # the way on names this folder


def test_taking_a_lock_already_held_by_this_sendlock_says_yes(tmp_path: Path):
    lock = SendLock(tmp_path)
    assert lock.try_acquire() is True and lock.try_acquire() is True and lock.held
    lock.release()
    assert not lock.held and lock_is_free(tmp_path)
