"""One sender at a time (issue 10, item 9): the kernel send lock and the ledger's claim of a delivery.

The lock is a real `flock` held by real processes (children of the test), killed with SIGKILL;
the claim is tested on a real SQLite ledger, one test per state it must refuse, and through the
engine against a loopback SMTP server while "another run" holds a delivery.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.delivery.engine import DeliveryChanged, SendEngine
from relcomm_tui.store.ledger import ClaimRefused, DeliveryIntent, Ledger
from relcomm_tui.store.lock import LOCK_NAME, SendLock, SendLockedError, lock_holder, lock_is_free
from faulty_mailserver import FaultyMailServer

from send_helpers import load, simple_render, write_plan


def holder(state_dir: Path, *, how: str = "relcomm", spawn: bool = False) -> subprocess.Popen:
    """A live process holding the send lock until its stdin closes (or it is killed).

    how="relcomm": through SendLock; how="bare": a bare flock on an empty send.lock, i.e. a holder
    caught between taking the lock and writing its name. With `spawn`, the holder also starts a
    long-lived child of its own (a gate or password command left running)."""
    if how == "relcomm":
        take = f"from relcomm_tui.store.lock import SendLock\nlock = SendLock({str(state_dir)!r}); lock.acquire()\n"
    else:
        take = (f"import fcntl\nos.makedirs({str(state_dir)!r}, mode=0o700, exist_ok=True)\n"
                f"fd = os.open({str(state_dir / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
                "os.ftruncate(fd, 0); fcntl.flock(fd, fcntl.LOCK_EX)\n")
    if spawn:
        take += ("import subprocess\ngrandchild = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], "
                 "stdin=subprocess.PIPE, close_fds=False)\nprint(grandchild.pid, flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", "import os, sys\n" + take + "print('held', flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return child


def wait_held(child: subprocess.Popen) -> list[str]:
    lines = []
    while True:
        line = child.stdout.readline()
        assert line, f"the holder died (exit {child.wait()})"
        if line.strip() == "held":
            return lines
        lines.append(line.strip())


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()


def one_delivery(state_dir: Path) -> tuple[Ledger, str]:
    ledger = Ledger.open(state_dir)
    ledger.ensure_deliveries("1.0", [DeliveryIntent("news", "bob@example.com", "Bob <bob@example.com>", "customers",
                                                    "email")], domain="example.com")
    (record,) = ledger.deliveries("1.0")
    return ledger, record.id


# -- the lock ------------------------------------------------------------------------------


def test_the_lock_is_refused_while_another_live_process_holds_it(tmp_path):
    child = holder(tmp_path)
    try:
        wait_held(child)
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire()
        assert caught.value.message.startswith(
            f"not sending: another relcomm process is sending this plan: PID {child.pid} on host ")
        assert " since " in caught.value.message and "wait for it to finish" in caught.value.hint
        assert lock_holder(tmp_path).pid == child.pid and not lock_is_free(tmp_path)
    finally:
        stop(child)


def test_the_lock_is_refused_while_the_holder_has_not_written_its_name_yet(tmp_path):
    # The old lock read an empty file as "pid 0", judged it stale, deleted it and sent too.
    child = holder(tmp_path, how="bare")
    try:
        wait_held(child)
        assert (tmp_path / LOCK_NAME).read_bytes() == b""
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire()
        assert "another relcomm process is sending this plan" in caught.value.message
        assert (tmp_path / LOCK_NAME).exists()  # never deleted under its holder
        assert lock_holder(tmp_path) is not None
    finally:
        stop(child)


def test_the_lock_is_taken_at_once_after_the_holder_is_sigkilled(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    ledger.mark_sending([bob])
    ledger.close()
    child = holder(tmp_path)
    try:
        wait_held(child)
        viewer = Ledger.open(tmp_path)  # a live sender's `sending` row is left alone
        assert viewer.delivery(bob).state == L.SENDING
        viewer.close()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    # No staleness guessing: the kernel released it with the process, so it is free at once.
    lock = SendLock(tmp_path)
    lock.acquire(grace=0)
    assert lock.held and lock_holder(tmp_path).pid == os.getpid()
    lock.release()
    assert (tmp_path / LOCK_NAME).exists() and lock_holder(tmp_path) is None
    # The dead sender's row is in doubt now.
    assert Ledger.open(tmp_path).delivery(bob).state == L.IN_DOUBT


def test_a_child_the_holder_started_does_not_keep_the_lock(tmp_path):
    child = holder(tmp_path, spawn=True)
    grandchild = None
    try:
        (line,) = wait_held(child)
        grandchild = int(line)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        os.kill(grandchild, 0)  # still alive
        with SendLock(tmp_path) as lock:
            assert lock.held
    finally:
        stop(child)
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)


def test_a_look_at_the_lock_does_not_turn_a_lone_sender_away(tmp_path):
    """`relcomm status` or opening the ledger holds a shared lock for an instant (longer if that
    process is descheduled): a sender meeting it waits, and is never told someone is sending."""
    with SendLock(tmp_path):  # makes the file
        pass
    looker = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys\n"
                               f"fd = os.open({str(tmp_path / LOCK_NAME)!r}, os.O_RDONLY)\n"
                               "fcntl.flock(fd, fcntl.LOCK_SH)\nprint('held', flush=True)\nsys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wait_held(looker)
        assert not SendLock(tmp_path).try_acquire()  # the look does stand in the way of the exclusive lock
        assert lock_is_free(tmp_path) and lock_holder(tmp_path) is None  # but it is not a sender
        threading.Timer(0.2, looker.stdin.close).start()  # the look ends, later than any grace below
        lock = SendLock(tmp_path)
        lock.acquire(grace=0)  # no grace at all: still not refused, because only a look held it
        assert lock.held
        lock.release()
    finally:
        stop(looker)


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with SendLock(tmp_path):
        with pytest.raises(SendLockedError) as caught:
            SendLock(tmp_path).acquire(grace=0)
        assert f"PID {os.getpid()}" in caught.value.message


# -- the claim -----------------------------------------------------------------------------


def put_in_state(ledger: Ledger, ident: str, state: str) -> None:
    ledger.apply([lambda db: db.execute("UPDATE deliveries SET state=? WHERE id=?", (state, ident))])


REFUSED = [L.SENDING, L.ACCEPTED, L.MARKED_DELIVERED, L.AWAITING, L.REJECTED, L.IN_DOUBT]


@pytest.mark.parametrize("state", REFUSED)
def test_a_delivery_in_this_state_cannot_be_claimed(tmp_path, state):
    ledger, bob = one_delivery(tmp_path)
    put_in_state(ledger, bob, state)
    before = ledger.delivery(bob)
    with pytest.raises(ClaimRefused) as caught:
        ledger.mark_sending([bob], run_id=None)
    after = ledger.delivery(bob)
    assert (after.state, after.attempts, after.updated) == (state, before.attempts, before.updated)
    assert "not sending it" in caught.value.message


@pytest.mark.parametrize("state", [L.QUEUED, L.DEFERRED])
def test_a_queued_or_deferred_delivery_is_claimed_once(tmp_path, state):
    ledger, bob = one_delivery(tmp_path)
    put_in_state(ledger, bob, state)
    first = ledger.start_run("send", "1.0", "d")
    ledger.mark_sending([bob], first)
    assert ledger.delivery(bob).state == L.SENDING and ledger.delivery(bob).run_id == first
    # A second claim, by another run or the same one, loses.
    second = ledger.start_run("send", "1.0", "d")
    with pytest.raises(ClaimRefused, match=rf"already being sent \(by run #{first}\)"):
        ledger.mark_sending([bob], second)
    with pytest.raises(ClaimRefused):
        ledger.mark_sending([bob], first)
    assert ledger.delivery(bob).run_id == first and ledger.delivery(bob).attempts == 1


def test_in_doubt_is_claimed_only_after_the_engineer_requeues_it(tmp_path):
    ledger, bob = one_delivery(tmp_path)
    put_in_state(ledger, bob, L.IN_DOUBT)
    with pytest.raises(ClaimRefused):
        ledger.mark_sending([bob])
    assert ledger.requeue([bob]) == 1  # resend in doubt
    ledger.mark_sending([bob])
    assert ledger.delivery(bob).state == L.SENDING


def test_a_claim_lost_in_a_batch_leaves_the_others_claimed(tmp_path):
    ledger = Ledger.open(tmp_path)
    ledger.ensure_deliveries("1.0", [DeliveryIntent("news", f"u{i}@example.com", f"u{i}", None, "email")
                                     for i in range(3)], domain="example.com")
    a, b, c = (r.id for r in ledger.deliveries("1.0"))
    put_in_state(ledger, b, L.SENDING)
    with pytest.raises(ClaimRefused):
        ledger.mark_sending([a, b, c])  # all or nothing in one transaction
    assert [ledger.delivery(x).state for x in (a, b, c)] == [L.QUEUED, L.SENDING, L.QUEUED]


async def test_a_run_that_loses_the_claim_does_not_send(tmp_path):
    """Another run (a second connection to the ledger, as another process would have) claims the
    last recipient while this run is sending the first: this run must not mail that recipient."""
    server = FaultyMailServer(maildir=tmp_path / "server-mail", data_delay=0.02)
    await server.start_async()
    try:
        plan = load(write_plan(tmp_path / "plan", server.port, recipients=10, concurrency=1))
        ledger = Ledger.open(plan.state_dir)
        other = Ledger.open(plan.state_dir, recover=False)
        last = "customer9@example.com"
        stolen: list[int] = []
        events: list = []

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, DeliveryChanged) and event.state == L.SENDING and not stolen:
                target = next(r for r in other.deliveries("4.2.0", "news") if r.recipient_key == last)
                run = other.start_run("send", "4.2.0", plan.digest)
                other.mark_sending([target.id], run)
                stolen.append(run)

        summary = await SendEngine(plan, ledger, render=simple_render, on_event=on_event, backoff_base=0.01).run()
        other.close()
        assert stolen, "the other run never got its claim in"
        copies = [r for m in server.messages for r in m.rcpt_tos]
        assert last not in copies  # the run that lost the claim did not mail them
        assert sorted(copies) == sorted(f"customer{i}@example.com" for i in range(9))
        record = next(r for r in ledger.deliveries("4.2.0", "news") if r.recipient_key == last)
        assert record.state == L.SENDING and record.run_id == stolen[0] and record.attempts == 1
        said = [e.detail for e in events if isinstance(e, DeliveryChanged) and e.delivery_id == record.id]
        assert any(f"already being sent (by run #{stolen[0]})" in d for d in said)
        assert summary.counts[L.ACCEPTED] == 9
    finally:
        await server.stop_async()
