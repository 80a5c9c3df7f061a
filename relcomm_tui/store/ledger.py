"""The ledger: the durable SQLite journal of runs, deliveries, sign-offs and receipts.

Exactly-once delivery rests on this file. A delivery's `sending` row (with its Message-ID)
is committed before the text of that message reaches a server and its outcome right
after the reply, so whatever happens to the process, the ledger says who certainly got a
message, who certainly did not, and who is *in doubt*.

Durability: WAL mode with `synchronous=FULL`, so every commit is on disk (the WAL is
fsynced) before `commit()` returns. NORMAL would let the last transactions vanish on power
loss, and a vanished `sending` row is exactly how a message gets sent twice. Concurrent
writers (the engine's connections) are group-committed (`apply`) so FULL costs one fsync
per batch, not per message.

Files are private: the folder is 0700 and the database 0600 (SQLite gives the -wal/-shm
files the database's mode). Nothing here ever stores a password.

Why over 500 lines: the schema's migrations are kept here as SQL text, in order, never edited
(about 150 lines); the class itself is the opening, trust and write discipline (deliveries and
inbound reports are its parts in deliveries.py and inbound.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import state
from .deliveries import DeliveryBook
from .inbound import InboundBook
from .lock import lock_is_free
from .records import (  # noqa: F401  (callers use ledger.DeliveryIntent, ledger.delivery_id, ...)
    _DELIVERY_COLUMNS,
    _RECEIPT_COLUMNS,
    ID_PREFIX,
    DeliveryIntent,
    DeliveryRecord,
    RunRecord,
    delivery_id,
    is_legacy_envelope_id,
    is_relcomm_envelope_id,
    is_relcomm_message_id,
    new_envelope_id,
    new_message_id,
)

# The ledger's words, used by its callers as ledger.ACCEPTED etc.
from .states import (  # noqa: F401
    ACCEPTED,
    AWAITING,
    DEFERRED,
    FINAL_STATES,
    IN_DOUBT,
    MARKED_DELIVERED,
    QUEUED,
    REJECTED,
    RUN_MODES,
    SENDING,
    STATE_LABELS,
    STATES,
    ClaimRefused,
    LedgerError,
    LedgerRefused,
    LedgerStorageError,
    now,
    who_am_i,
)

LEDGER_NAME = "ledger.sqlite"


# How long a write waits for another process's write transaction (seconds). Long enough for
# a receipts refresh; the environment variable exists for slow shared disks (and the tests).
BUSY_TIMEOUT = float(os.environ.get("RELCOMM_LEDGER_BUSY_TIMEOUT", "30"))


def storage_error(error: sqlite3.Error, path: Path, doing: str = "use") -> LedgerStorageError:
    """A clear message and a fix for what SQLite says about the ledger's file."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error)
    again = "then run the same command again: it continues where it stopped"
    if name.startswith("SQLITE_FULL") or "full" in text:
        return LedgerStorageError(f"cannot {doing} the ledger {path}: the disk is full",
                                  f"free some space on that disk (or move the state folder and give --state DIR), {again}")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return LedgerStorageError(f"cannot {doing} the ledger {path}: it is read-only",
                                  f"make the state folder and the ledger writable (is the disk mounted read-only?), {again}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return LedgerStorageError(
            f"cannot {doing} the ledger {path}: another process has it locked (waited {BUSY_TIMEOUT:g} s)",
            f"close the other program writing to it (the relcomm app, `relcomm receipts`, an sqlite3 shell), {again}")
    return LedgerStorageError(f"cannot {doing} the ledger {path}: {text}",
                              f"check the disk and the state folder, {again}")


# Each migration takes the schema from version i to i+1. Never edit a released one; append.
MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT,
        who TEXT NOT NULL,
        host TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('send', 'dry-run', 'test', 'follow-up')),
        release_version TEXT NOT NULL,
        plan_digest TEXT NOT NULL,
        outcome TEXT
    );
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        release_version TEXT NOT NULL,
        communique_id TEXT NOT NULL,
        recipient_key TEXT NOT NULL,
        recipient_display TEXT NOT NULL,
        group_id TEXT,
        channel TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        message_id TEXT,
        envelope_id TEXT,
        reply TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        accepted_at TEXT,
        run_id INTEGER REFERENCES runs(id),
        UNIQUE (release_version, communique_id, recipient_key)
    );
    CREATE INDEX deliveries_by_state ON deliveries (release_version, state);
    CREATE UNIQUE INDEX deliveries_by_message_id ON deliveries (message_id);
    CREATE TABLE signoffs (
        release_version TEXT NOT NULL,
        plan_digest TEXT NOT NULL,
        group_id TEXT NOT NULL,
        reviewed INTEGER NOT NULL,
        who TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (release_version, plan_digest, group_id)
    );
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT REFERENCES deliveries(id),
        source_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        action TEXT,
        status TEXT,
        diagnostic TEXT,
        at TEXT NOT NULL,
        raw_summary TEXT
    );
    CREATE INDEX receipts_by_delivery ON receipts (delivery_id);
    CREATE TABLE seen_messages (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (source, key)
    );
    """,
    # Receipts that hold up (issues 10.7, 11.1, 11.2, 11.9): random identifiers per delivery, when
    # each was first sent, the person a corrected address is for, how each receipt was matched, and
    # the content key of every report read (so a copy read from anywhere counts once).
    # Unsent deliveries get random ids now (SQLite's randomblob: ChaCha20 seeded by the OS); sent
    # ones keep what went out. Their send time is not known: `created` is a lower bound.
    """
    ALTER TABLE deliveries ADD COLUMN sent_at TEXT;
    ALTER TABLE deliveries ADD COLUMN person_key TEXT;
    UPDATE deliveries SET sent_at = created WHERE attempts > 0 OR state NOT IN ('queued', 'awaiting');
    UPDATE deliveries SET envelope_id = 'relcomm.' || lower(hex(randomblob(16))),
        message_id = '<relcomm.' || lower(hex(randomblob(16))) || substr(message_id, instr(message_id, '@'))
        WHERE attempts = 0 AND state = 'queued';
    CREATE INDEX deliveries_by_envelope_id ON deliveries (envelope_id);
    CREATE INDEX deliveries_by_recipient ON deliveries (recipient_key);
    ALTER TABLE receipts ADD COLUMN matched_by TEXT;
    ALTER TABLE receipts ADD COLUMN note TEXT;
    UPDATE receipts SET matched_by = CASE
        WHEN delivery_id IS NULL THEN NULL
        WHEN json_valid(raw_summary) AND json_extract(raw_summary, '$.matched_by') = 'recipient' THEN 'address'
        WHEN json_valid(raw_summary) AND json_extract(raw_summary, '$.matched_by') IS NOT NULL
            THEN json_extract(raw_summary, '$.matched_by')
        ELSE 'ledger' END;
    CREATE TABLE report_keys (
        key TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        message_key TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    # the ledger's owner tag (state.py): a random ledger id and HMAC(the user's key, id), and
    # every adoption of a ledger that did not carry a valid tag
    """
    CREATE TABLE ledger_tag (
        only INTEGER PRIMARY KEY CHECK (only = 1),
        ledger_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        created TEXT NOT NULL,
        who TEXT NOT NULL,
        host TEXT NOT NULL
    );
    CREATE TABLE ledger_adoptions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        reason TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    """,
    # calendar invitations (invitations/store.py): each sequence of a communique's event as sent,
    # with its random UID (one per communique and release) and what it said (JSON), so an update
    # knows the time before and a cancel needs no plan
    """
    CREATE TABLE invitations (
        release_version TEXT NOT NULL,
        communique_id TEXT NOT NULL,
        sequence INTEGER NOT NULL CHECK (sequence >= 0),
        method TEXT NOT NULL CHECK (method IN ('REQUEST', 'CANCEL')),
        uid TEXT NOT NULL,
        event TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (release_version, communique_id, sequence)
    );
    CREATE INDEX invitations_by_uid ON invitations (uid);
    """,
    # The script's progress (issue 14): what happened to each step, appended, never changed. A wait
    # counts from the step's `ready` row, so a resumed send never shortens it; `started` rows say a
    # step's communiques were handed to the engine, so a finished step is never sent again.
    """
    CREATE TABLE script_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_version TEXT NOT NULL,
        step_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX script_events_by_release ON script_events (release_version, id);
    """,
]



class Ledger(DeliveryBook, InboundBook):
    """One open ledger file. Thread-safe: one connection guarded by a lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, *, recover: bool = True, adopting: bool = False) -> "Ledger":
        """Open (creating with private modes, migrating) `<state_dir>/ledger.sqlite`.

        Refuses (LedgerRefused) a state folder, ledger or lock that is a link or not this user's,
        and a ledger relcomm did not write for this user (state.py); a new ledger is tagged as
        theirs in the transaction that creates it. With `adopting` (only `relcomm adopt-state`),
        an untrusted ledger is opened for `adopt_summary()` and `adopt()`, nothing written yet.

        With `recover`, deliveries left in `sending` by a dead process become `in doubt`,
        unless a live process holds the send lock (then they are really being sent).
        """
        state_dir = Path(state_dir).expanduser()
        path = state_dir / LEDGER_NAME
        try:
            state.prepare_folder(state_dir)
            # Created by us (born 0600: SQLite would use the umask), never through a link.
            state.prepare_ledger_file(path)
            connection = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        except OSError as error:
            if (state_dir / LEDGER_NAME).exists():
                # Never suggest another folder here: a new ledger would not know what was sent.
                raise LedgerStorageError(
                    f"cannot write the ledger {state_dir / LEDGER_NAME}: {error.strerror}",
                    "make the state folder and the ledger writable (is the disk mounted read-only, or full?), "
                    "then run the same command again: it continues where it stopped") from None
            raise LedgerError(f"cannot create the ledger in {state_dir}: {error.strerror}",
                              "check the folder's permissions, or choose another with --state DIR") from None
        except sqlite3.Error as error:
            raise LedgerError(f"cannot open the ledger {state_dir / LEDGER_NAME}: {error}",
                              "check the file's permissions, or choose another with --state DIR") from None
        ledger = cls(path, connection)
        try:
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")  # first: the others may wait
            # Nothing of an untrusted ledger is used, or written to, before its tag is checked.
            if not ledger._create_if_empty():
                reason = state.distrust(connection)
                ledger.distrusted = reason
                if reason is not None and not adopting:
                    raise state.refusal(path, reason)
            if not adopting:
                ledger._configure()
                ledger._migrate()
        except (sqlite3.DatabaseError, LedgerError) as error:
            connection.close()
            if isinstance(error, LedgerError):
                raise error from None
            name = getattr(error, "sqlite_errorname", "") or ""
            if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise LedgerError(f"the ledger {path} is unreadable: {error}",
                                  "it is not a relcomm ledger or it is damaged; move it aside to start afresh") from None
            # Locked, read-only, full: the ledger is fine; moving it aside would forget what was sent.
            raise storage_error(error, path, "open") from None
        if recover and not adopting:
            try:
                ledger._recover_unless_sending()
            except LedgerError:
                connection.close()
                raise
        return ledger

    def _create_if_empty(self) -> bool:
        """Make the schema and this user's tag in one transaction when the file holds nothing yet
        (two relcomm processes making the same new ledger: one makes it, the other checks it)."""
        if not state.is_empty(self._db):
            return False
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if not state.is_empty(self._db):
                self._db.execute("ROLLBACK")
                return False
            for number, script in enumerate(MIGRATIONS):
                for statement in _statements(script):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number + 1}")
            state.write_tag(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return True

    def _recover_unless_sending(self) -> int:
        """`recover_in_doubt`, unless a live process holds the send lock. The lock is looked at
        inside the write transaction: a sender takes the lock before it claims anything and cannot
        claim while this transaction holds the ledger, so a free lock here means every `sending`
        row is a dead process's."""
        folder = self.path.parent
        return self._write(lambda db: self._recover_work(db) if lock_is_free(folder) else 0)  # type: ignore[return-value]

    # -- adopting a ledger that does not carry this user's tag (relcomm adopt-state) ----------

    distrusted: str | None = None  # why the tag did not verify (set by open)

    def adopt_summary(self) -> list[str]:
        """What the ledger says (runs, deliveries, sign-offs), for the engineer to judge."""
        with self._reading():
            return state.summarize(self._db)

    def adopt(self, summary: Sequence[str]) -> None:
        """Tag the ledger as this user's and record who adopted it, when, and what it said then."""
        with self._reading():
            foreign = state.foreign_objects(self._db)
        if foreign:
            raise LedgerRefused(f"the ledger {self.path} holds {', '.join(foreign)}, which relcomm never makes "
                                "(they would act on every later write)", state.way_on(self.path.parent))
        reason = self.distrusted or "adopted"
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"cannot adopt the ledger {self.path}: {error}", state.way_on(self.path.parent)) from None

        def work(db: sqlite3.Connection) -> None:
            state.write_tag(db)
            state.record_adoption(db, self.path, reason, list(summary))

        self._write(work)
        self.distrusted = None

    def _configure(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")  # first: the others may wait
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")

    def _migrate(self) -> None:
        with self._reading():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise LedgerError(
                    f"the ledger {self.path} was written by a newer relcomm (schema {version})",
                    "upgrade relcomm to read it",
                )
            for number in range(version, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        with self._reading():
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The connection, alone; SQLite's complaints about the file become LedgerStorageError."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as error:
                raise storage_error(error, self.path, "read") from None

    def _write(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """Run `work` in one immediate transaction, committed (durably) before returning.

        A failed COMMIT (disk full, I/O error) is rolled back too, so the connection is usable
        once the problem is fixed; the error says what happened and how to fix it."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        try:
                            self._db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            except sqlite3.OperationalError as error:
                raise storage_error(error, self.path, "write to") from None
            return result

    def apply(self, works: Sequence[Callable[[sqlite3.Connection], object]]) -> list[object]:
        """Group commit: several writes in one transaction, one fsync. All or nothing."""
        return self._write(lambda db: [work(db) for work in works])  # type: ignore[return-value]

    # -- review / sign-off ---------------------------------------------------------------

    def reviewed_groups(self, release_version: str, plan_digest: str) -> set[str]:
        with self._reading():
            rows = self._db.execute(
                "SELECT group_id FROM signoffs WHERE release_version=? AND plan_digest=? AND reviewed=1",
                (release_version, plan_digest),
            ).fetchall()
        return {row[0] for row in rows}

    def set_reviewed(self, release_version: str, plan_digest: str, group_id: str, reviewed: bool, who: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO signoffs (release_version, plan_digest, group_id, reviewed, who, at) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (release_version, plan_digest, group_id) DO UPDATE SET reviewed=excluded.reviewed, "
            "who=excluded.who, at=excluded.at",
            (release_version, plan_digest, group_id, int(bool(reviewed)), who, now()),
        ))

    def signoffs(self, release_version: str) -> list[dict]:
        with self._reading():
            rows = self._db.execute(
                "SELECT plan_digest, group_id, reviewed, who, at FROM signoffs WHERE release_version=? ORDER BY at",
                (release_version,),
            ).fetchall()
        return [dict(zip(("plan_digest", "group_id", "reviewed", "who", "at"), row)) for row in rows]

    # -- the script (issue 14; relcomm_tui.script reads and writes these) -----------------

    def script_events(self, release_version: str) -> list[tuple[str, str, str, str, str]]:
        """(step id, kind, at, who, detail) of the release's script, oldest first."""
        with self._reading():
            return [tuple(row) for row in self._db.execute(
                "SELECT step_id, kind, at, who, detail FROM script_events WHERE release_version=? ORDER BY id",
                (release_version,))]

    def activity_mark(self, release_version: str) -> tuple:
        """Changes when a delivery of the release or any receipt changes (cheap: two indexed reads),
        so what is computed from them (fates: seconds for 10,000 people) is computed again only then."""
        with self._reading():
            receipts = self._db.execute("SELECT COUNT(*), MAX(id) FROM receipts").fetchone()
            updated = self._db.execute("SELECT MAX(updated), COUNT(*) FROM deliveries WHERE release_version=?",
                                       (release_version,)).fetchone()
        return (*receipts, *updated)

    def add_script_events(self, release_version: str, events: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Append (step id, kind, at, who, detail) rows in one transaction."""
        if events:
            self._write(lambda db: db.executemany(
                "INSERT INTO script_events (release_version, step_id, kind, at, who, detail) VALUES (?,?,?,?,?,?)",
                [(release_version, *event) for event in events]))

    # -- runs ----------------------------------------------------------------------------

    def start_run(self, mode: str, release_version: str, plan_digest: str,
                  who: str | None = None, host: str | None = None) -> int:
        if mode not in RUN_MODES:
            raise ValueError(f"unknown run mode {mode!r}")
        login, hostname = who_am_i()
        return self._write(lambda db: db.execute(
            "INSERT INTO runs (started, who, host, mode, release_version, plan_digest) VALUES (?,?,?,?,?,?)",
            (now(), who or login, host or hostname, mode, release_version, plan_digest),
        ).lastrowid)  # type: ignore[return-value]

    def finish_run(self, run_id: int, outcome: str) -> None:
        self._write(lambda db: db.execute("UPDATE runs SET finished=?, outcome=? WHERE id=?", (now(), outcome, run_id)))

    def runs(self, release_version: str | None = None) -> list[RunRecord]:
        query = "SELECT id, started, finished, who, host, mode, release_version, plan_digest, outcome FROM runs"
        params: tuple = ()
        if release_version is not None:
            query += " WHERE release_version=?"
            params = (release_version,)
        with self._reading():
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [RunRecord(*row) for row in rows]

    # -- deliveries ----------------------------------------------------------------------

    # The engine's writes. Each returns a function for `apply`, so several connections'
    # writes share one transaction; the plain methods commit at once.

    # -- receipts (recorded by the receipts work) ----------------------------------------

def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our back)."""
    return [part.strip() for part in script.split(";") if part.strip()]
