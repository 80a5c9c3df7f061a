"""The send lock: one process at a time sends a plan.

A kernel lock: `flock(LOCK_EX | LOCK_NB)` on `send.lock` in the state folder, held for the
whole send. The kernel gives it to one open file at a time and drops it the moment the
holder's process ends, however it ends (SIGKILL included), so nothing is ever judged "stale":
there is no window in which a second sender can read a half-written file, decide its owner is
dead and take over. Rules:

* The file is never deleted, not even on release: deleting a locked file would let the next
  process lock a new file of the same name while the old holder is still sending.
* It is opened without following links and must be this user's regular file (state.py): a
  plan folder that ships `send.lock` as a link cannot make relcomm write elsewhere.
* The holder's pid, host and start time are written into the file after the lock is taken,
  only so a refusal can say who is sending; what decides is the kernel lock, never the text.
* The descriptor is not inherited by commands relcomm runs (close-on-exec), so a child that
  outlives the sender cannot keep the lock.
* A quick look (`lock_is_free`, `lock_holder`: `relcomm status`, opening the ledger) takes a
  shared lock for an instant. A sender that meets one waits it out: after LOOK_GRACE it names
  the holder only if the lock is still held by a sender (a shared look would still get it).

Across hosts the lock is only as good as the file system's: Linux NFS clients map flock onto
NFS locks; a file system without locks makes every flock succeed (documented in security.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from . import state

LOCK_NAME = "send.lock"
# A sender refused the lock tries again for this long before it says who is sending: a look
# (status, opening the ledger) holds a shared lock for microseconds (longer only on a loaded
# machine), and must not make a lone sender give up. If the lock is free by then, it was a look.
LOOK_GRACE = 2.0


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "another relcomm process is sending this plan (it has not said which yet)"
        return f"another relcomm process is sending this plan: PID {self.pid} on host {self.host} since {self.since}"


class SendLockedError(Exception):
    """Another live process is sending this plan."""

    def __init__(self, holder: LockHolder, path: Path) -> None:
        self.holder = holder
        self.path = path
        self.message = f"not sending: {holder.describe()}"
        self.hint = ("wait for it to finish (relcomm status PLAN shows where it stands), or stop that process; "
                     "the lock is released by the system the moment it ends, and a run started then continues "
                     "where it stopped")
        super().__init__(self.message)


def _read_holder(fd: int) -> LockHolder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        # The holder took the lock and has not written its name yet: it is still the holder.
        return LockHolder(None, None, None)


def _open_existing(state_dir: Path) -> int | None:
    """The lock file opened for a look, or None when there is none (nobody ever sent here)."""
    state_dir = Path(state_dir)
    if not state.check_entry(state_dir, "the state folder", state_dir, directory=True):
        return None
    try:
        return state.open_private_file(state_dir / LOCK_NAME, os.O_RDONLY, "the send lock", state_dir)
    except FileNotFoundError:
        return None


def _look(fd: int) -> bool:
    """True when no process holds the lock right now (checked with an instant shared lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def lock_is_free(state_dir: Path) -> bool:
    """No live process sends from this state folder right now. Raises LedgerRefused for a lock
    or folder that is not the user's own."""
    fd = _open_existing(state_dir)
    if fd is None:
        return True
    try:
        return _look(fd)
    finally:
        os.close(fd)


def lock_holder(state_dir: Path) -> LockHolder | None:
    """Who holds the send lock right now (a live process, this one included), or None."""
    fd = _open_existing(state_dir)
    if fd is None:
        return None
    try:
        return None if _look(fd) else _read_holder(fd)
    finally:
        os.close(fd)


class SendLock:
    """Held for the duration of a send: `with SendLock(state_dir): ...`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no process holds it; False (at once) otherwise."""
        if self._fd is not None:
            return True
        state.prepare_folder(self.state_dir)
        fd = state.open_private_file(self.path, os.O_RDWR | os.O_CREAT, "the send lock", self.state_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        try:
            os.fchmod(fd, 0o600)
            note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, note, 0)
        except OSError:
            pass  # the note is only for messages; the kernel lock is what counts
        self._fd = fd
        return True

    def _refused(self) -> SendLockedError | None:
        """Why the lock cannot be had, or None when it is free again (it was only a look)."""
        holder = lock_holder(self.state_dir)
        return None if holder is None else SendLockedError(holder, self.path)

    def acquire(self, grace: float = LOOK_GRACE) -> None:
        """Take the lock or raise SendLockedError; a look at the lock is waited out for `grace` s."""
        deadline = time.monotonic() + grace
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                refused = self._refused()
                if refused is not None:
                    raise refused
                deadline = time.monotonic() + grace  # a look that was slow to end: try again
            time.sleep(0.01)

    async def acquire_async(self, grace: float = LOOK_GRACE) -> None:
        """`acquire` for the event loop: waiting out a look does not stop the loop."""
        deadline = time.monotonic() + grace
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                refused = self._refused()
                if refused is not None:
                    raise refused
                deadline = time.monotonic() + grace
            await asyncio.sleep(0.01)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)  # no stale name in the file; the file itself stays
            except OSError:
                pass
            os.close(fd)  # closing the last descriptor releases the kernel lock

    def __enter__(self) -> "SendLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
