"""Incremental inbound sources: Maildir, mbox and IMAP.

Each source yields ``InboundMessage(key, raw)`` for messages whose key the
caller has not seen yet.  Keys are stable across refreshes:

* Maildir: the message's maildir key (file name without the ``:2,FLAGS`` info),
  so a message moving from new/ to cur/ or changing flags keeps its key.
* mbox: ``"{offset}:{hash}"``, the byte offset of the ``From `` line plus a short
  hash of that line and the first header bytes.
* IMAP: ``"{uidvalidity}:{uid}"``.

Sources never move, rename, flag or delete mail.  ``count_opened`` counts the
messages whose content was read, so callers and tests can check that a refresh
only touched new messages.

Anyone can put things in a receipts folder, so only regular files are read
(``relcomm_tui.common.files``): a FIFO, device, socket or symlink in a Maildir's
new/ or cur/ is skipped without being opened (a FIFO would hang the refresh, a
device never end), and an mbox that is not a regular file is refused with a
problem naming it.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

from ..common.errors import UserError
from ..common.files import NotRegular, read_regular
from ..common.secret_text import hide_secrets
from .parse import MAX_RAW_BYTES

__all__ = ["InboundMessage", "MaildirSource", "MboxSource", "ImapSource", "maildir_key"]

Seen = Callable[[str], bool]

# The parser reads only the head of a huge message (parse.MAX_RAW_BYTES): reading more of a
# 50 MB bounce into memory would only be thrown away. One byte more tells it it was cut.
READ_LIMIT = MAX_RAW_BYTES + 1


@dataclass(frozen=True)
class InboundMessage:
    key: str
    raw: bytes


def maildir_key(filename: str) -> str:
    """The maildir key of a file name: everything before the info suffix (':2,...', or
    ';2,...' / '!2,...' used on file systems that forbid ':')."""
    i = filename.find(":")
    if i > 0:
        return filename[:i]
    for sep in (";2,", "!2,"):
        i = filename.find(sep)
        if i > 0:
            return filename[:i]
    return filename


class MaildirSource:
    """Reads new/ and cur/ of a Maildir without moving or deleting anything."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count_opened = 0
        self.count_listed = 0

    def _entries(self) -> list[tuple[str, str]]:
        """(file name, directory) of every message in new/ and cur/ (listing only)."""
        out: list[tuple[str, str]] = []
        for sub in ("new", "cur"):
            d = os.path.join(self.path, sub)
            try:
                names = os.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            out.extend((n, d) for n in names if not n.startswith("."))
        self.count_listed += len(out)
        return out

    def keys(self) -> list[str]:
        return sorted({maildir_key(n) for n, _ in self._entries()})

    def read_new(self, seen: Seen) -> Iterator[InboundMessage]:
        # list first (a message may move from new/ to cur/ while we read), keep only
        # unseen keys, and open just those, oldest first (maildir names start with time)
        todo: dict[str, tuple[str, str]] = {}
        for name, d in self._entries():
            key = maildir_key(name)
            if key not in todo and not seen(key):
                todo[key] = (name, d)
        for key in sorted(todo):
            name, d = todo[key]
            try:
                found = read_regular(os.path.join(d, name), READ_LIMIT)
            except OSError:  # NotRegular (a FIFO, device, symlink): skipped, never opened
                continue
            if found is None:
                # moved by an MUA between listing and reading: look for it again
                raw = self._find_moved(key)
                if raw is None:
                    continue
            else:
                raw = found[0]
            self.count_opened += 1
            yield InboundMessage(key, raw)

    def _find_moved(self, key: str) -> bytes | None:
        for sub in ("cur", "new"):
            d = self.path / sub
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for n in names:
                if maildir_key(n) == key:
                    try:
                        found = read_regular(d / n, READ_LIMIT)
                    except OSError:
                        return None
                    return found[0] if found else None
        return None


_FROM_LINE_RE = re.compile(rb"^From ", re.M)


class MboxSource:
    """Reads an mbox file; keys are the From_ line offset plus a short content hash.

    The file is scanned for ``From `` separators (which is cheap); a message's body
    is only sliced out (and counted in ``count_opened``) when its key is unseen."""

    HASH_BYTES = 512

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count_opened = 0

    @staticmethod
    def _key(offset: int, head: bytes) -> str:
        return f"{offset}:{hashlib.sha1(head).hexdigest()[:12]}"

    def _offsets(self, data: bytes) -> list[int]:
        offsets = []
        for m in _FROM_LINE_RE.finditer(data):
            pos = m.start()
            if pos == 0 or data[pos - 1:pos] == b"\n":
                # mboxrd/mboxo: a real separator follows an empty line (or starts the file)
                if pos == 0 or data[max(0, pos - 2):pos] == b"\n\n" or data[max(0, pos - 3):pos] == b"\n\r\n":
                    offsets.append(pos)
        return offsets

    def read_new(self, seen: Seen) -> Iterator[InboundMessage]:
        try:
            found = read_regular(self.path, 1 << 62, follow_symlinks=True)
        except NotRegular as error:
            if error.kind == "a folder":
                return  # as before: nothing to read (a Maildir given as mbox is a plan mistake the checks name)
            raise UserError(f"the mbox {self.path} is {error.kind}, not a file: it was not read",
                            "point the mbox source at a regular mbox file (a FIFO or device would never end)") from None
        if found is None:
            return
        data = found[0]
        offsets = self._offsets(data)
        for i, start in enumerate(offsets):
            end = offsets[i + 1] if i + 1 < len(offsets) else len(data)
            key = self._key(start, data[start:min(end, start + self.HASH_BYTES)])
            if seen(key):
                continue
            self.count_opened += 1
            chunk = data[start:end]
            nl = chunk.find(b"\n")
            body = chunk[nl + 1:] if nl >= 0 else b""
            # undo mboxrd quoting of From_ lines in the body
            body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
            if body.endswith(b"\n\n"):
                body = body[:-1]
            yield InboundMessage(key, body)


class ImapSource:
    """IMAP (IMAPS or STARTTLS) source using the stdlib ``imaplib``; blocking, so
    callers run ``read_new`` in a worker thread.

    url: ``imaps://user@host[:port]/INBOX`` (implicit TLS, default port 993) or
    ``imap://user@host[:port]/INBOX`` (STARTTLS required, default port 143).
    Add ``?insecure=1`` to skip certificate verification (test servers only) and
    ``?plaintext=1`` to allow an unencrypted ``imap://`` session (loopback tests only).
    """

    def __init__(self, url: str, password: str, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps"):
            raise ValueError(f"unsupported IMAP url scheme: {parts.scheme!r}")
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (993 if parts.scheme == "imaps" else 143)
        self.user = unquote(parts.username or "")
        self.password = password
        self.mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        self.plaintext = query.get("plaintext") == "1"
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            if query.get("insecure") == "1":
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.count_opened = 0

    def _connect(self) -> imaplib.IMAP4:
        if self.scheme == "imaps":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context,
                                                    timeout=self.timeout)
        else:
            conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            if "STARTTLS" in conn.capabilities:
                conn.starttls(ssl_context=self.ssl_context)
            elif not self.plaintext:
                conn.logout()
                raise ConnectionError(f"{self.host}:{self.port} does not offer STARTTLS")
        conn.login(self.user, self.password)
        return conn

    def read_new(self, seen: Seen) -> Iterator[InboundMessage]:
        try:
            yield from self._read_new(seen)
        except imaplib.IMAP4.error as error:
            # imaplib quotes the server's words, and a server may echo the LOGIN line: never the password.
            words = " ".join(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in error.args)
            raise type(error)(hide_secrets(words, (self.password,))) from None

    def _read_new(self, seen: Seen) -> Iterator[InboundMessage]:
        conn = self._connect()
        try:
            typ, _ = conn.select(_quote_mailbox(self.mailbox), readonly=True)
            if typ != "OK":
                raise ConnectionError(f"cannot select {self.mailbox}")
            uidvalidity = _untagged_int(conn, "UIDVALIDITY")
            typ, data = conn.uid("SEARCH", None, "ALL")
            if typ != "OK":
                raise ConnectionError("UID SEARCH failed")
            uids = [int(u) for u in (data[0] or b"").split()]
            for uid in uids:
                key = f"{uidvalidity}:{uid}"
                if seen(key):
                    continue
                typ, fetched = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
                if typ != "OK":
                    continue
                raw = None
                for item in fetched:
                    if isinstance(item, tuple) and len(item) >= 2:
                        raw = item[1]
                        break
                if raw is None:
                    continue
                self.count_opened += 1
                yield InboundMessage(key, raw)
        finally:
            try:
                conn.logout()
            except Exception:
                pass


def _quote_mailbox(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _untagged_int(conn: imaplib.IMAP4, name: str) -> int:
    typ, data = conn.response(name)
    try:
        return int(data[0])
    except (TypeError, ValueError, IndexError):
        typ, data = conn.status("INBOX", f"({name})")
        m = re.search(rb"%s (\d+)" % name.encode(), data[0] or b"")
        return int(m.group(1)) if m else 0
