"""The state folder (`.relcomm/` beside the plan, or `--state DIR`) and whether relcomm may trust it.

What the ledger says decides who is mailed (an `accepted` row is never sent again) and whether
review is done (sign-offs), so it must be this user's own record, and a plan folder may come
from anyone (a git clone, a colleague's copy). The rules:

* The state folder and every file relcomm keeps in it (the ledger and SQLite's companion files,
  the send lock, the dry-run outbox) must be a real folder or regular file: never a symbolic
  link (relcomm would chmod and write wherever it points), owned by the user running relcomm,
  and, for files, with one name only (a hard link would write elsewhere too). Checked before
  relcomm reads, writes or chmods anything there; files are opened without following links.
* Ownership alone does not stop a shipped ledger: a clone is owned by whoever clones it. Each
  ledger relcomm creates carries a random ledger id and HMAC-SHA256(key, id), the key being a
  per-user secret in the settings folder (`keys/ledger.key`, 0600 in a 0700 folder, made on
  first use). A ledger whose tag does not verify, or that has none (made by an older relcomm,
  or forged), is refused; `relcomm adopt-state PLAN` shows what such a ledger says and, once the
  engineer agrees, tags it as theirs and records the adoption.
* relcomm writes a `.gitignore` of `*` into a state folder it creates, so the ledger (the customer
  list, who got what) is not committed with the plan by accident.

Every refusal is a `LedgerRefused` (a LedgerError: message plus hint) naming the place and the
way on: `--state DIR`, or move the folder aside.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import pwd
import shlex
import sqlite3
import stat
from pathlib import Path

from ..common.config import CONFIG_DIR_ENV, config_dir
from .states import STATE_LABELS, LedgerError, LedgerRefused, now, who_am_i

KEY_FOLDER = "keys"
KEY_NAME = "ledger.key"
TAG_TABLE = "ledger_tag"
ADOPTIONS_TABLE = "ledger_adoptions"
GITIGNORE = ".gitignore"
# SQLite's files beside the ledger: a link among them would have SQLite write through it.
COMPANIONS = ("-wal", "-shm", "-journal")
_TAG_CONTEXT = b"relcomm ledger tag v1\x00"
# The key and ledger ids come from os.urandom (the CSPRNG behind `secrets`) directly, so nothing
# that replaces secrets.token_hex (the snapshot tests make Message-IDs steady that way) touches them.


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _me() -> str:
    return _owner(os.geteuid())


def way_on(folder: Path) -> str:
    """The hint every refusal ends with: how to go on without trusting this folder."""
    aside = shlex.quote(str(folder) + ".untrusted")
    return (f"relcomm uses only state it made for you (one that came with the plan, in a git clone or a copy, is "
            f"not): move it aside (mv {shlex.quote(str(folder))} {aside}) or keep relcomm's state elsewhere "
            "with --state DIR")


def _refuse_kind(path: Path, info: os.stat_result, what: str, folder: Path, *, directory: bool) -> None:
    """Raise unless `info` (from lstat or fstat) is this user's own real folder or single-named file."""
    if stat.S_ISLNK(info.st_mode):
        try:
            target = f" (to {os.readlink(path)})"
        except OSError:
            target = ""
        raise LedgerRefused(f"{what} {path} is a symbolic link{target}; relcomm does not follow links there",
                            way_on(folder))
    if directory and not stat.S_ISDIR(info.st_mode):
        raise LedgerRefused(f"{what} {path} is not a folder", way_on(folder))
    if not directory and not stat.S_ISREG(info.st_mode):
        raise LedgerRefused(f"{what} {path} is not a regular file", way_on(folder))
    if info.st_uid != os.geteuid():
        raise LedgerRefused(f"{what} {path} belongs to {_owner(info.st_uid)}, not to you ({_me()})",
                            "relcomm keeps its state only in a folder you own; " + way_on(folder))
    if not directory and info.st_nlink > 1:
        raise LedgerRefused(f"{what} {path} has {info.st_nlink} names (hard links); relcomm would write elsewhere too",
                            way_on(folder))


def check_entry(path: Path, what: str, folder: Path, *, directory: bool = False) -> bool:
    """False when nothing is at `path`; raises LedgerRefused when something is there that is not ours."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    _refuse_kind(path, info, what, folder, directory=directory)
    return True


def prepare_folder(folder: Path) -> None:
    """Create the state folder (0700) or check the one that is there, then make it private.

    The mode is set through a descriptor opened without following links, so a folder swapped
    for a link after the check is not chmodded either. A folder relcomm makes gets a `.gitignore`
    of `*` (never one that was there already: `--state .` must not hide a plan from git)."""
    created = False
    if not check_entry(folder, "the state folder", folder, directory=True):
        try:
            folder.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            pass  # another relcomm made it meanwhile: checked below like any other
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            check_entry(folder, "the state folder", folder, directory=True)  # says what it is
        raise
    try:
        _refuse_kind(folder, os.fstat(fd), "the state folder", folder, directory=True)
        os.fchmod(fd, 0o700)
        if not created:
            return
        try:
            ignore = os.open(GITIGNORE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=fd)
        except FileExistsError:
            pass
        else:
            with os.fdopen(ignore, "w", encoding="utf-8") as handle:
                handle.write("# relcomm's state (the ledger: who was sent what) stays out of version control\n*\n")
    finally:
        os.close(fd)


def open_private_file(path: Path, flags: int, what: str, folder: Path) -> int:
    """Open (creating 0600 when `flags` say so) a file in the state folder without following a
    link; refuse one that is not this user's own regular, single-named file."""
    try:
        # O_NONBLOCK: a FIFO put there must be refused below, not wait forever for a writer.
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            check_entry(path, what, folder)  # raises: it is a link
        raise
    try:
        _refuse_kind(path, os.fstat(fd), what, folder, directory=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def prepare_ledger_file(path: Path) -> None:
    """The ledger file exists, is ours and 0600; SQLite's companion files, if any, are ours too."""
    folder = path.parent
    for suffix in COMPANIONS:
        check_entry(Path(str(path) + suffix), "the ledger's file", folder)
    fd = open_private_file(path, os.O_RDWR | os.O_CREAT, "the ledger", folder)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def check_outbox(folder: Path, outbox: Path) -> None:
    """The dry-run outbox, and everything directly in it (Maildir's new/cur/tmp, one folder per
    communique), must be ours and no link: a shipped link would receive the rendered messages."""
    if not check_entry(outbox, "the dry-run outbox", folder, directory=True):
        return
    for entry in outbox.iterdir():
        check_entry(entry, "the dry-run outbox entry", folder, directory=stat.S_ISDIR(os.lstat(entry).st_mode))


# -- the per-user key and the ledger's tag ------------------------------------------------------


def key_path() -> Path:
    return config_dir() / KEY_FOLDER / KEY_NAME


def _key_problem(message: str) -> LedgerError:
    return LedgerError(message, f"relcomm keeps a private key in its settings folder ({config_dir()}, or "
                                f"{CONFIG_DIR_ENV}) to recognise the ledgers it wrote for you; fix that folder")


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise _key_problem(f"the ledger key {path} is not your own regular file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise LedgerError(f"the ledger key {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o}), "
                              "so anyone who reads it could forge a ledger you would trust",
                              f"chmod 600 {shlex.quote(str(path))}")
        data = os.read(fd, 256).strip()
    finally:
        os.close(fd)
    if len(data) < 32:
        raise _key_problem(f"the ledger key {path} is damaged")
    return data


def ledger_key(create: bool) -> bytes | None:
    """This user's secret; made on first use when `create` (None when absent and not made).

    Made in a temporary file, then linked into place: a second relcomm starting at the same
    moment either links first or reads the finished key, never half of one."""
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _key_problem(f"the ledger key {path} is a symbolic link") from None
        raise _key_problem(f"cannot read the ledger key {path}: {error.strerror}") from None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path.parent)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise _key_problem(f"{path.parent} is not your own folder")
        os.chmod(path.parent, 0o700)
        temporary = path.parent / f".{KEY_NAME}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(os.urandom(32).hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another relcomm made it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
        return _read_key(path)
    except OSError as error:
        raise _key_problem(f"cannot create the ledger key in {path.parent}: {error.strerror}") from None


def tag_for(key: bytes, ledger_id: str) -> str:
    return hmac.new(key, _TAG_CONTEXT + ledger_id.encode("utf-8"), hashlib.sha256).hexdigest()


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def is_empty(db: sqlite3.Connection) -> bool:
    """Nothing in the database at all: a ledger that is being made, with nothing to trust or distrust."""
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def write_tag(db: sqlite3.Connection) -> str:
    """Mark the ledger as this user's (inside the caller's transaction). Returns the ledger id."""
    key = ledger_key(create=True)
    assert key is not None
    ledger_id = os.urandom(16).hex()
    login, host = who_am_i()
    db.execute(f"DELETE FROM {TAG_TABLE}")
    db.execute(f"INSERT INTO {TAG_TABLE} (only, ledger_id, tag, created, who, host) VALUES (1,?,?,?,?,?)",
               (ledger_id, tag_for(key, ledger_id), now(), login, host))
    return ledger_id


def distrust(db: sqlite3.Connection) -> str | None:
    """Why this (non-empty) ledger is not trusted, or None when its tag verifies for this user."""
    if TAG_TABLE not in _tables(db):
        return "it has no mark of being written by relcomm for you (an older relcomm made it, or it came with the plan)"
    row = db.execute(f"SELECT ledger_id, tag FROM {TAG_TABLE} WHERE only=1").fetchone()
    if row is None or not all(isinstance(v, str) for v in row):
        return "it has no mark of being written by relcomm for you (an older relcomm made it, or it came with the plan)"
    key = ledger_key(create=False)
    if key is None:
        return (f"it was not written by relcomm for you on this host; it may have come with the plan "
                f"(and you have no ledger key yet: {key_path()})")
    if not hmac.compare_digest(tag_for(key, row[0]), row[1]):
        return "it was not written by relcomm for you on this host; it may have come with the plan"
    return None


def refusal(path: Path, reason: str) -> LedgerRefused:
    folder = path.parent
    return LedgerRefused(
        f"the ledger {path} is not used: {reason}",
        f"{way_on(folder)}; if it really is yours (made by an older relcomm, or moved here), review what it says "
        f"and adopt it: relcomm adopt-state PLAN --state {shlex.quote(str(folder))}")


# -- adoption: what an untrusted ledger says, for the engineer to judge -------------------------


def summarize(db: sqlite3.Connection) -> list[str]:
    """What a ledger says, in lines for the engineer: runs, deliveries by state, sign-offs.

    Reads only the columns of the first schema, so a ledger of any relcomm version can be shown."""
    tables = _tables(db)
    lines: list[str] = []
    if "runs" in tables:
        runs = db.execute("SELECT id, started, who, host, mode, release_version, outcome FROM runs ORDER BY id").fetchall()
        lines.append(f"runs: {len(runs)}")
        for ident, started, who, host, mode, version, outcome in runs[-10:]:
            lines.append(f"  #{ident} {str(started)[:19]} {mode} of {version} by {who}@{host}: {outcome or 'unfinished'}")
        if len(runs) > 10:
            lines.insert(len(lines) - 10, f"  ({len(runs) - 10} earlier runs not shown)")
    if "deliveries" in tables:
        rows = db.execute("SELECT release_version, state, COUNT(*) FROM deliveries GROUP BY release_version, state "
                          "ORDER BY release_version, state").fetchall()
        if not rows:
            lines.append("deliveries: none")
        for version in dict.fromkeys(r[0] for r in rows):
            parts = ", ".join(f"{n} {STATE_LABELS.get(s, s)}" for v, s, n in rows if v == version)
            lines.append(f"deliveries of {version}: {parts}")
        done = db.execute("SELECT release_version, communique_id, recipient_display, state FROM deliveries "
                          "WHERE state IN ('accepted', 'marked_delivered') ORDER BY rowid").fetchall()
        if done:
            lines.append(f"  never sent again if adopted ({len(done)}):")
            for version, communique, who, state in done[:20]:
                lines.append(f"    {version} {communique} -> {who} ({STATE_LABELS.get(state, state)})")
            if len(done) > 20:
                lines.append(f"    ... and {len(done) - 20} more")
    if "signoffs" in tables:
        signoffs = db.execute("SELECT release_version, group_id, who, at, plan_digest FROM signoffs WHERE reviewed=1 "
                              "ORDER BY release_version, at").fetchall()
        lines.append(f"sign-offs (groups marked reviewed): {len(signoffs)}")
        for version, group, who, at, digest in signoffs[:30]:
            lines.append(f"  {version} {group} by {who} at {str(at)[:19]} (plan {str(digest)[:12]})")
        if len(signoffs) > 30:
            lines.append(f"  ... and {len(signoffs) - 30} more")
    return lines


def foreign_objects(db: sqlite3.Connection) -> list[str]:
    """Triggers and views: relcomm never makes them, and a trigger would act on every later write."""
    return [f"{kind} {name}" for kind, name in
            db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view') ORDER BY name")]


def record_adoption(db: sqlite3.Connection, path: Path, reason: str, summary: list[str]) -> None:
    login, host = who_am_i()
    db.execute(f"INSERT INTO {ADOPTIONS_TABLE} (at, who, host, path, reason, summary) VALUES (?,?,?,?,?,?)",
               (now(), login, host, str(path), reason, "\n".join(summary)))


def adoptions(db: sqlite3.Connection) -> list[dict]:
    if ADOPTIONS_TABLE not in _tables(db):
        return []
    columns = ("at", "who", "host", "path", "reason", "summary")
    return [dict(zip(columns, row)) for row in
            db.execute(f"SELECT {', '.join(columns)} FROM {ADOPTIONS_TABLE} ORDER BY id")]
