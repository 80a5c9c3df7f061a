"""Files: reading one that someone else may have replaced with a FIFO, a device or a symlink,
and writing one so that a reader (or a crash) sees the old content or the new, never half.

Folders relcomm reads but does not own (a web site's folder it publishes into, a receipts
Maildir that anyone can deliver to) may hold entries that are not files: a FIFO blocks whoever
opens it until a writer comes (forever, in practice), `/dev/zero` never ends, `/dev/stdin`
steals the terminal, and a symlink leads anywhere. `read_regular` reads only regular files:
it looks first (lstat, so nothing is opened that is not one), then opens without following a
symlink and without blocking (O_NOFOLLOW | O_NONBLOCK) and checks again on the open file (fstat),
so an entry swapped between the look and the open is refused too. At most `limit` bytes are read.

Stdlib only; never blocks on what it refuses. Tests: tests/test_hostile_paths.py (publish folder),
tests/test_receipt_sources.py (Maildir and mbox).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegular(OSError):
    """The path exists but is not a regular file (symlink, FIFO, socket, device, folder)."""

    def __init__(self, path: str | os.PathLike, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{os.fspath(path)} is {kind}, not a regular file")
        self.path = os.fspath(path)
        self.kind = kind


def kind_of(mode: int) -> str:
    """What a file mode is, in words."""
    for test, word in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "not a regular file"


def read_regular(path: str | os.PathLike, limit: int, *, follow_symlinks: bool = False
                 ) -> tuple[bytes, os.stat_result] | None:
    """The first `limit` bytes of the regular file at `path`, and its stat; None when there is
    nothing there (or a parent is not a folder). Raises NotRegular for anything but a regular
    file, without opening it; other OSErrors (permissions) as they come. `follow_symlinks`: a
    symlink to a regular file is read (a path the engineer configured, such as an mbox), still
    never a FIFO or a device at its end."""
    path = Path(path)
    try:
        mode = (os.stat if follow_symlinks else os.lstat)(path).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(path, kind_of(mode))
        fd = os.open(path, _FLAGS & ~getattr(os, "O_NOFOLLOW", 0) if follow_symlinks else _FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:  # it became a symlink after the lstat
            raise NotRegular(path, "a symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(path, kind_of(info.st_mode))
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(limit - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` all at once: a temp file in the same folder (created new, never
    through a link), written and fsynced, renamed over the old name, then the folder fsynced so
    the rename survives a power cut. A reader sees the old file or the new one, never half; a
    symlink at `path` is replaced by the file, never followed. The one way relcomm writes a file
    it owns (settings, consent records, published pages and the index, dry-run outbox files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # the umask may have narrowed it; callers ask for 0600 or 0644 on purpose
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(folder)
