"""The files a plan uses (members CSV, templates, release notes): read once, through one check.

Their content is sent, so a plan (perhaps from a pull request, or a folder someone else can write
to) must not make relcomm mail ~/.ssh/id_ed25519, nor change what is sent after it was validated.
Rules, all enforced here and nowhere else:

- `resolve_inside` checks the name: relative, no `~`, no `..`, no NUL; once symlinks are resolved
  the file is inside the plan's folder (a symlink that stays inside is fine).
- `read_file` opens what was resolved without following links: each folder below the plan's
  folder is opened relative to its parent with O_NOFOLLOW (openat), the file itself with
  O_NOFOLLOW | O_NONBLOCK, so a symlink swapped in after the check is refused, not followed, and
  a FIFO never blocks; the opened descriptor must be a regular file (fstat S_ISREG). Problems
  are recorded in the snapshot, never raised: the loader and the checks say what they mean.
- What was read is kept in the loaded Plan (`FileSnapshot`: text + sha256). Rendering reads only
  that. `FileWatch` tells when the disk no longer matches the snapshot (the send stops then):
  `quick` compares lstat identities (microseconds, fine before every message), `full` re-reads
  every file through `read_file` and compares digests.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .model import FileSnapshot, Plan

MAX_FILE_BYTES = 64 * 2**20  # a members list of a million people is under this; /dev/zero-like files are not

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_OPENAT = os.open in os.supports_dir_fd and bool(_NOFOLLOW) and bool(_DIRECTORY)


class OutsideFolder(ValueError):
    """A name that is not a file inside the plan's folder; `reason` says why, `hint` what to do."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


_HINT = "put the file in the plan's folder (or a folder below it) and name it relative to the plan"


def resolve_inside(root: Path, name: str) -> Path:
    """Where `name` (as a plan writes it) leads, which must be inside `root`. Raises OutsideFolder."""
    if "\x00" in name or not name.strip():
        raise OutsideFolder("not a file name", _HINT)
    written = Path(name)
    if written.is_absolute() or name.startswith("~"):
        raise OutsideFolder("the path must be relative to the plan's folder", _HINT)
    if ".." in written.parts:
        raise OutsideFolder("the path climbs out of the plan's folder with `..`", _HINT)
    try:
        path = (root / written).resolve()
        path.exists()  # ENAMETOOLONG, ELOOP, EACCES: say so here rather than later
    except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, a name too long, an unreadable folder
        reason = getattr(error, "strerror", None) or str(error)
        raise OutsideFolder(f"cannot use this path ({reason})", "check the name and the symlinks on the way") from None
    if not path.is_relative_to(root):
        raise OutsideFolder(f"the path leads out of the plan's folder through a symlink (to {path})", _HINT)
    return path


def _open_inside(root: Path, path: Path) -> int:
    """A read-only descriptor for `path` (resolved, inside `root`), opened without following any link."""
    parts = path.relative_to(root).parts  # ValueError when outside: the caller resolved it, so a bug
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "is the plan's folder", str(path))
    file_flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _NOCTTY
    if not _OPENAT:
        # No openat here: the last component is still not followed, and the fd is checked below.
        return os.open(path, file_flags)
    folder = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], file_flags, dir_fd=folder)
    finally:
        os.close(folder)


def _symlink_on_the_way(root: Path, path: Path) -> bool:
    here = root
    for part in path.relative_to(root).parts[:-1]:
        here = here / part
        if here.is_symlink():
            return True
    return False


def read_file(root: Path, path: Path, *, written: str, what: str, keypath: str) -> FileSnapshot:
    """Read one file of the plan (resolved by `resolve_inside`) into a snapshot; problems are recorded."""

    def problem(kind: str, detail: str = "", identity: tuple[int, ...] = ()) -> FileSnapshot:
        return FileSnapshot(path, written, what, keypath, None, "", kind, detail, identity or _identity(path) or ())

    try:
        fd = _open_inside(root, path)
    except FileNotFoundError:
        return problem("missing")
    except NotADirectoryError:
        # O_DIRECTORY | O_NOFOLLOW on a folder swapped for a symlink fails this way too.
        if _symlink_on_the_way(root, path):
            return problem("moved", "a folder on the way is now a symlink")
        return problem("missing", "a folder on the way is not a folder")
    except IsADirectoryError:
        return problem("folder")
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):
            # O_NOFOLLOW met a symlink where the check saw none: something changed it meanwhile.
            return problem("moved", "a symlink appeared on the way while it was opened")
        if error.errno == errno.ENXIO:  # a socket, or a FIFO on a system that refuses O_NONBLOCK opens
            return problem("special")
        return problem("unreadable", error.strerror or str(error))
    try:
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if stat.S_ISDIR(info.st_mode):
            return problem("folder", identity=identity)
        if not stat.S_ISREG(info.st_mode):
            return problem("special", identity=identity)
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            return problem("too-large", f"over {MAX_FILE_BYTES // 2**20} MB", identity)
    except OSError as error:
        return problem("unreadable", error.strerror or str(error))
    finally:
        os.close(fd)
    data = b"".join(chunks)
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        return FileSnapshot(path, written, what, keypath, None, digest, "encoding",
                            f"{line}:{column}:0x{data[error.start]:02x}", identity)
    return FileSnapshot(path, written, what, keypath, text, digest, "", "", identity)


def snapshot_plan_file(path: Path, data: bytes) -> FileSnapshot:
    """The plan file itself, as the loader read it (named by the user, so not checked for containment)."""
    try:
        info = os.stat(path, follow_symlinks=False)
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    except OSError:
        identity = ()
    return FileSnapshot(path, path.name, "plan file", "", data.decode("utf-8-sig", errors="replace"),
                        hashlib.sha256(data).hexdigest(), "", "", identity)


# -- has anything changed since the plan was loaded? --------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """A file whose content on disk is no longer what was loaded (and validated)."""

    snapshot: FileSnapshot
    now: str  # what it is now, in words

    @property
    def message(self) -> str:
        snapshot = self.snapshot
        return (f"the {snapshot.what} {snapshot.name} changed on disk after the plan was loaded and checked "
                f"({self.now}); nothing more is sent")

    @property
    def hint(self) -> str:
        return ("everything sent so far used the checked text, and the deliveries not sent stay queued: "
                "review the change, load the plan again (relcomm validate PLAN, or `r` in the app) and send again")


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError:
        return (-1,)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _describe(before: FileSnapshot, after: FileSnapshot | None, why: str = "") -> str:
    if why:
        return why
    if after is None or after.problem == "missing":
        return "it was removed"
    if after.problem == "special":
        return "it is now a FIFO or a device, not a regular file"
    if after.problem == "folder":
        return "it is now a folder"
    if after.problem == "moved":
        return "it is now reached through a symlink"
    if after.problem:
        return f"it can no longer be read: {after.detail or after.problem}"
    if before.problem == "missing":
        return "it was created"
    return "its content is different"


def _recheck(plan: Plan, snapshot: FileSnapshot) -> FileChange | None:
    """Read the file again, exactly as loading does, and compare."""
    if snapshot.what == "plan file":
        # The user named it (symlinks and all); only its content matters. Never a blocking open.
        try:
            fd = os.open(snapshot.path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | _NOCTTY)
        except OSError as error:
            return FileChange(snapshot, "it was removed" if error.errno == errno.ENOENT
                              else f"it can no longer be read: {error.strerror}")
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return FileChange(snapshot, "it is now a FIFO, a device or a folder, not a regular file")
            with os.fdopen(os.dup(fd), "rb") as handle:
                same = hashlib.sha256(handle.read(MAX_FILE_BYTES + 1)).hexdigest() == snapshot.digest
        except OSError as error:
            return FileChange(snapshot, f"it can no longer be read: {error.strerror}")
        finally:
            os.close(fd)
        return None if same else FileChange(snapshot, "its content is different")
    try:
        path = resolve_inside(plan.root, snapshot.written)
    except OutsideFolder as error:
        return FileChange(snapshot, f"the name now leads elsewhere: {error.reason}")
    if path != snapshot.path:
        return FileChange(snapshot, f"the name now leads to another file, {path}")
    after = read_file(plan.root, path, written=snapshot.written, what=snapshot.what, keypath=snapshot.keypath)
    if (after.problem, after.digest) == (snapshot.problem, snapshot.digest):
        return None
    if snapshot.problem == after.problem == "unreadable":
        return None  # still unreadable (the words may differ); nothing was read either time
    return FileChange(snapshot, _describe(snapshot, after))


class FileWatch:
    """Compares the disk with a loaded plan's snapshots. Cheap enough to ask before every message."""

    FULL_EVERY = 2.0  # seconds between full re-reads while a long send runs

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._next_full = 0.0
        # Where each snapshot was written through a symlink, that symlink is watched too.
        self._quick: list[tuple[FileSnapshot, Path, tuple[int, ...] | None]] = []
        for snapshot in plan.files:
            self._quick.append((snapshot, snapshot.path, snapshot.identity or None))
            if snapshot.what != "plan file":
                as_written = plan.root / snapshot.written
                if as_written != snapshot.path:
                    self._quick.append((snapshot, as_written, _identity(as_written)))

    def quick(self) -> FileChange | None:
        """lstat only (a file replaced, rewritten, removed or re-linked), then a re-read of what moved."""
        for index, (snapshot, path, identity) in enumerate(self._quick):
            now = _identity(path)
            if now == identity:
                continue
            change = _recheck(self.plan, snapshot)
            if change is not None:
                return change
            # Touched, same bytes (an editor saving unchanged text): quick again next time.
            self._quick[index] = (snapshot, path, now)
        return None

    def full(self) -> FileChange | None:
        """Every file read again through the containment check, and compared with its digest."""
        self._next_full = time.monotonic() + self.FULL_EVERY
        for snapshot in self.plan.files:
            change = _recheck(self.plan, snapshot)
            if change is not None:
                return change
        return None

    def full_due(self) -> bool:
        """True when a full check is due; the caller then runs `full()` (others meanwhile do not)."""
        now = time.monotonic()
        if now < self._next_full:
            return False
        self._next_full = now + self.FULL_EVERY
        return True

    def full_soon(self) -> None:
        """The next check is a full one (a new communique starts)."""
        self._next_full = 0.0

    def check(self) -> FileChange | None:
        """A quick check, and a full one when one is due."""
        return self.full() if self.full_due() else self.quick()


def changes(plan: Plan) -> FileChange | None:
    """The first file that differs from what the plan loaded, reading everything again."""
    return FileWatch(plan).full()
