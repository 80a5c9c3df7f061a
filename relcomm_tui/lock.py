"""The send lock: one process at a time sends a plan.

A file `send.lock` beside the ledger holds the sender's pid, host and start time. It is
created with O_EXCL, so two processes can never both take it. A lock left by a dead process
on this host is stale and taken over; a lock from another host is never guessed at (the
user removes it, the message says how).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "send.lock"


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"already being sent by PID {self.pid} on host {self.host} since {self.since}"


class SendLockedError(Exception):
    """Another live process is sending this plan."""

    def __init__(self, holder: LockHolder, path: Path) -> None:
        self.holder = holder
        self.path = path
        self.message = holder.describe()
        self.hint = (f"wait for it to finish; if that process is gone (another host), remove {path}"
                     if holder.host != socket.gethostname() else "wait for it to finish, or stop it")
        super().__init__(self.message)


def _read(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Half-written by a process killed between create and write: treat as ours-to-take
        # only through the stale check below (pid 0 never lives).
        return LockHolder(0, socket.gethostname(), "unknown")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_live(holder: LockHolder) -> bool:
    if holder.host != socket.gethostname():
        return True  # cannot check another host's processes: assume it is still sending
    return _alive(holder.pid)


def lock_holder(state_dir: Path) -> LockHolder | None:
    """Who holds the send lock right now (a live process), or None."""
    holder = _read(Path(state_dir) / LOCK_NAME)
    if holder is None or not _is_live(holder) or (holder.pid == os.getpid() and holder.host == socket.gethostname()):
        return None
    return holder


class SendLock:
    """Held for the duration of a send: `with SendLock(state_dir): ...`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise
                holder = _read(self.path)
                if holder is not None and _is_live(holder):
                    raise SendLockedError(holder, self.path) from None
                # Stale (dead pid on this host): remove and try again.
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self._held = True
            return
        holder = _read(self.path) or LockHolder(0, "?", "?")
        raise SendLockedError(holder, self.path)

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                holder = _read(self.path)
                if holder is not None and holder.pid == os.getpid():
                    self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "SendLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
