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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from . import state
from .lock import lock_is_free

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


def delivery_id(release_version: str, communique_id: str, recipient_key: str) -> str:
    """Stable id of one (release, communique, recipient): the ledger's own key for it.

    Anyone holding the plan can compute it, so it is never sent in a message (issue 10.7): what
    goes out is the delivery's random envelope id and Message-ID (new_envelope_id, new_message_id).
    """
    text = f"{release_version}\x00{communique_id}\x00{recipient_key.strip().lower()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# Identifiers relcomm puts into what it sends start with this, so a report naming one that this
# ledger does not hold is known to be about another send (another ledger, plan folder or state).
ID_PREFIX = "relcomm."
ID_BYTES = 16  # 128 random bits: nobody can guess one, nor compute it from the plan
_LEGACY_ENVELOPE_ID = re.compile(r"[0-9a-f]{20}")


def new_envelope_id() -> str:
    """A delivery's DSN envelope id (ENVID): random, made once, stored, reused by every resend."""
    return ID_PREFIX + secrets.token_hex(ID_BYTES)


def new_message_id(domain: str) -> str:
    """A delivery's Message-ID: random, made once, stored, reused by every resend."""
    return f"<{ID_PREFIX}{secrets.token_hex(ID_BYTES)}@{domain or 'relcomm.invalid'}>"


def is_relcomm_envelope_id(value: str | None) -> bool:
    """An ENVID relcomm makes (or made before ids were random: 20 hex digits of delivery_id)."""
    text = (value or "").strip().lower()
    return text.startswith(ID_PREFIX) or bool(_LEGACY_ENVELOPE_ID.fullmatch(text))


def is_legacy_envelope_id(value: str | None) -> bool:
    """An ENVID from before ids were random: computable from the plan, so it proves nothing."""
    return bool(_LEGACY_ENVELOPE_ID.fullmatch((value or "").strip().lower()))


def is_relcomm_message_id(value: str | None) -> bool:
    """A Message-ID relcomm makes: `<relcomm.…@domain>` (old ones had the same start)."""
    text = (value or "").strip().strip("<>").strip().lower()
    return text.startswith(ID_PREFIX) and "@" in text


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    release_version: str
    communique_id: str
    recipient_key: str
    recipient_display: str
    group_id: str | None
    channel: str
    state: str
    attempts: int
    message_id: str | None
    envelope_id: str | None
    reply: str | None          # the server's words (or the error) for the last attempt
    created: str
    updated: str
    accepted_at: str | None
    run_id: int | None
    sent_at: str | None = None      # when its text first went out (the first `sending`); None: never
    person_key: str | None = None   # the plan member it is for, when not recipient_key (a corrected address)

    @property
    def person(self) -> str:
        """Who this delivery is for: the plan member's key (a follow-up to a corrected address
        is still for the member whose address bounced)."""
        return self.person_key or self.recipient_key

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__} | {"state_label": self.state_label}


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    started: str
    finished: str | None
    who: str
    host: str
    mode: str
    release_version: str
    plan_digest: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class DeliveryIntent:
    """What the engine wants recorded for one delivery before it exists (ensure_deliveries)."""

    communique_id: str
    recipient_key: str
    recipient_display: str
    group_id: str | None
    channel: str
    person_key: str | None = None  # the plan member, when the address is a correction of theirs


_DELIVERY_COLUMNS = (
    "id, release_version, communique_id, recipient_key, recipient_display, group_id, channel, state, attempts, "
    "message_id, envelope_id, reply, created, updated, accepted_at, run_id, sent_at, person_key"
)
_RECEIPT_COLUMNS = ("id", "delivery_id", "source_key", "kind", "action", "status", "diagnostic", "at", "raw_summary",
                    "matched_by", "note")

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
]

# A send may start only from these states (one conditional UPDATE claims a delivery): never
# from `sending` (another run has it), a final state, `awaiting`, `rejected` or `in doubt`
# (those go back to `queued` only through `requeue`, the engineer's explicit choice).
CLAIMABLE_STATES = (QUEUED, DEFERRED)


class Ledger:
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

    def ensure_deliveries(self, release_version: str, intents: Iterable[DeliveryIntent], *, domain: str) -> int:
        """Create a `queued` delivery for each intent not yet known, with its own random envelope
        id and Message-ID (made here, once: a resend reuses them; nobody can compute them).

        Existing deliveries are left alone: their state and ids are history.
        Returns how many were created.
        """
        stamp = now()

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "INSERT INTO deliveries (id, release_version, communique_id, recipient_key, recipient_display, "
                "group_id, channel, state, attempts, message_id, envelope_id, created, updated, person_key) "
                "VALUES (?,?,?,?,?,?,?,?,0,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    (
                        delivery_id(release_version, i.communique_id, i.recipient_key),
                        release_version, i.communique_id, (key := i.recipient_key.strip().lower()),
                        i.recipient_display, i.group_id, i.channel, QUEUED, new_message_id(domain),
                        new_envelope_id(), stamp, stamp,
                        person if (person := (i.person_key or "").strip().lower()) and person != key else None,
                    )
                    for i in intents
                ),
            )
            return db.total_changes - before

        return self._write(work)  # type: ignore[return-value]

    def deliveries(self, release_version: str, communique_id: str | None = None) -> list[DeliveryRecord]:
        query = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE release_version=?"
        params: tuple = (release_version,)
        if communique_id is not None:
            query += " AND communique_id=?"
            params += (communique_id,)
        with self._reading():
            rows = self._db.execute(query + " ORDER BY rowid", params).fetchall()
        return [DeliveryRecord(*row) for row in rows]

    def delivery(self, ident: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id=?", (ident,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def pending(self, release_version: str, communique_id: str,
                states: Iterable[str]) -> list[tuple[str, str, str, int, str, str]]:
        """(id, recipient_key, message_id, attempts, state, envelope_id) of a communique's deliveries in `states`.

        Small tuples, not records: a 100,000-recipient send keeps only these in memory.
        """
        wanted = tuple(states)
        marks = ",".join("?" * len(wanted))
        with self._reading():
            return self._db.execute(
                f"SELECT id, recipient_key, message_id, attempts, state, envelope_id FROM deliveries WHERE release_version=? "
                f"AND communique_id=? AND state IN ({marks}) ORDER BY rowid",
                (release_version, communique_id, *wanted),
            ).fetchall()

    def counts(self, release_version: str, communique_id: str | None = None) -> dict[str, int]:
        query = "SELECT state, COUNT(*) FROM deliveries WHERE release_version=?"
        params: tuple = (release_version,)
        if communique_id is not None:
            query += " AND communique_id=?"
            params += (communique_id,)
        with self._reading():
            rows = self._db.execute(query + " GROUP BY state", params).fetchall()
        counts = {state: 0 for state in STATES}
        counts.update(dict(rows))
        return counts

    # The engine's writes. Each returns a function for `apply`, so several connections'
    # writes share one transaction; the plain methods commit at once.

    @staticmethod
    def sending_work(ident: str, run_id: int | None) -> Callable[[sqlite3.Connection], object]:
        """Claim a delivery for this run: one conditional UPDATE, so of two runs (or two claims in
        one) only one can move it to `sending`; the other gets ClaimRefused and must not send."""
        stamp = now()

        def work(db: sqlite3.Connection) -> object:
            cursor = db.execute(
                "UPDATE deliveries SET state=?, attempts=attempts+1, updated=?, run_id=COALESCE(?, run_id), "
                f"sent_at=COALESCE(sent_at, ?) WHERE id=? AND state IN ({','.join('?' * len(CLAIMABLE_STATES))})",
                (SENDING, stamp, run_id, stamp, ident, *CLAIMABLE_STATES),
            )
            if cursor.rowcount != 1:
                row = db.execute("SELECT state, run_id FROM deliveries WHERE id=?", (ident,)).fetchone()
                if row is None:
                    raise ClaimRefused(f"delivery {ident} is not in the ledger; not sending it")
                if row[0] == SENDING:
                    raise ClaimRefused(f"delivery {ident} is already being sent (by run #{row[1]}); not sending it again")
                raise ClaimRefused(f"delivery {ident} is {STATE_LABELS.get(row[0], row[0])}, not queued or deferred; "
                                   "not sending it")
            return None

        return work

    @staticmethod
    def outcome_work(ident: str, state: str, reply: str | None,
                     attempted: bool = False) -> Callable[[sqlite3.Connection], object]:
        """`attempted`: an attempt that ended before any `sending` row (e.g. refused at RCPT,
        before the message text) still counts in `attempts`."""
        if state not in STATES or state in (SENDING,):
            raise ValueError(f"not an outcome: {state!r}")
        stamp = now()
        accepted_at = stamp if state == ACCEPTED else None
        # An attempt refused before its `sending` row still went to the server: it counts as sent.
        return lambda db: db.execute(
            "UPDATE deliveries SET state=?, reply=?, updated=?, accepted_at=COALESCE(?, accepted_at), "
            "attempts=attempts+?, sent_at=CASE WHEN ? THEN COALESCE(sent_at, ?) ELSE sent_at END WHERE id=?",
            (state, reply, stamp, accepted_at, int(attempted), int(attempted), stamp, ident),
        )

    def mark_sending(self, idents: Sequence[str], run_id: int | None = None) -> None:
        """Record the intent to send, durably, before any byte goes out."""
        self.apply([self.sending_work(ident, run_id) for ident in idents])

    def mark_outcome(self, ident: str, state: str, reply: str | None = None) -> None:
        self.apply([self.outcome_work(ident, state, reply)])

    def mark_delivered(self, ident: str, who: str, note: str = "") -> None:
        """The engineer says an in-doubt (or any unsent) delivery did arrive; never sent again."""
        self.mark_outcome(ident, MARKED_DELIVERED, f"marked delivered by {who}" + (f": {note}" if note else ""))

    def requeue(self, idents: Sequence[str]) -> int:
        """Put deferred/rejected/in-doubt deliveries back in the queue (retry failed, resend in doubt).

        The Message-ID is kept, so a mail client can drop a duplicate of an in-doubt message.
        """
        stamp = now()

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "UPDATE deliveries SET state=?, updated=? WHERE id=? AND state IN (?, ?, ?)",
                ((QUEUED, stamp, ident, DEFERRED, REJECTED, IN_DOUBT) for ident in idents),
            )
            return db.total_changes - before

        return self._write(work)  # type: ignore[return-value]

    def recover_in_doubt(self) -> int:
        """Deliveries left in `sending` by a process that died become `in doubt`. Returns how many.
        Only for the holder of the send lock (the engine); `open` checks the lock itself."""
        return self._write(self._recover_work)  # type: ignore[return-value]

    @staticmethod
    def _recover_work(db: sqlite3.Connection) -> int:
        return db.execute(
            "UPDATE deliveries SET state=?, updated=?, reply=COALESCE(reply || ' | ', '') || ? WHERE state=?",
            (IN_DOUBT, now(), "the sending process stopped before the server's reply was recorded", SENDING),
        ).rowcount

    # -- receipts (recorded by the receipts work) ----------------------------------------

    def add_receipt(self, source_key: str, kind: str, *, delivery_id: str | None = None, action: str | None = None,
                    status: str | None = None, diagnostic: str | None = None, at: str | None = None,
                    raw_summary: str | None = None, matched_by: str | None = None, note: str | None = None) -> bool:
        """Record one receipt; False if this source key was already recorded (a re-read).
        `matched_by` says how it was tied to its delivery (correlate.BY_*); "ledger" when the
        caller knows the delivery first hand (a manual step ticked here)."""
        if delivery_id is not None and matched_by is None:
            matched_by = "ledger"
        return bool(self._write(lambda db: db.execute(
            "INSERT INTO receipts (delivery_id, source_key, kind, action, status, diagnostic, at, raw_summary, "
            "matched_by, note) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source_key) DO NOTHING",
            (delivery_id, source_key, kind, action, status, diagnostic, at or now(), raw_summary, matched_by, note),
        ).rowcount))

    def receipts(self, delivery_id: str | None = None) -> list[dict]:
        query = f"SELECT {', '.join(_RECEIPT_COLUMNS)} FROM receipts"
        params: tuple = ()
        if delivery_id is not None:
            query += " WHERE delivery_id=?"
            params = (delivery_id,)
        with self._reading():
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [dict(zip(_RECEIPT_COLUMNS, row)) for row in rows]

    def delivery_by_message_id(self, message_id: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE message_id=?",
                                   (message_id,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def delivery_by_envelope_id(self, envelope_id: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE envelope_id=?",
                                   (envelope_id,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def deliveries_to(self, recipient_key: str) -> list[DeliveryRecord]:
        """Every delivery of any release in this ledger to one address (case-folded key)."""
        with self._reading():
            rows = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE recipient_key=? ORDER BY rowid",
                                    (recipient_key.strip().lower(),)).fetchall()
        return [DeliveryRecord(*row) for row in rows]

    def releases(self) -> set[str]:
        with self._reading():
            return {row[0] for row in self._db.execute("SELECT DISTINCT release_version FROM deliveries")}

    def seen_keys(self, source: str) -> set[str]:
        """Every key of `source` already read: one query, so a refresh of a big mailbox stays fast."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT key FROM seen_messages WHERE source=?", (source,))}

    def report_known(self, key: str) -> bool:
        """Whether a report with this content key was read before, from any source."""
        with self._reading():
            return self._db.execute("SELECT 1 FROM report_keys WHERE key=?", (key,)).fetchone() is not None

    def release_receipts(self, release_version: str) -> list[dict]:
        """The receipts matched to one release's deliveries (same keys as `receipts`)."""
        with self._reading():
            rows = self._db.execute(
                f"SELECT {', '.join('r.' + c for c in _RECEIPT_COLUMNS)} FROM receipts r JOIN deliveries d "
                "ON d.id = r.delivery_id WHERE d.release_version=? ORDER BY r.id", (release_version,)).fetchall()
        return [dict(zip(_RECEIPT_COLUMNS, row)) for row in rows]

    def unmatched_receipt_keys(self) -> list[str]:
        """Source keys of receipts that matched no delivery (kept so they can be counted and shown)."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT source_key FROM receipts WHERE delivery_id IS NULL")]

    def uncredited_reports(self) -> dict[str, int]:
        """Reports (messages, not rows) credited to no delivery, by why (the receipt's note;
        "" for none): {"another send": 3, "": 1, ...}. Every report has a row for its first
        recipient (source key ending in "|0"), so counting those counts reports."""
        with self._reading():
            rows = self._db.execute(
                "SELECT COALESCE(note, ''), COUNT(*) FROM receipts WHERE delivery_id IS NULL AND source_key LIKE '%|0' "
                "GROUP BY 1").fetchall()
        return dict(rows)

    def record_inbound(self, source: str, keys: Iterable[str], receipts: Sequence[dict],
                       reports: Sequence[tuple[str, str]] = ()) -> int:
        """Receipts (add_receipt's keywords plus `source_key` and `kind`), the source keys they
        came from and the content keys of the reports read, as (content key, source key), in one
        transaction. Returns how many receipts were new (re-reads add none)."""
        stamp = now()
        keys = list(keys)

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "INSERT INTO receipts (delivery_id, source_key, kind, action, status, diagnostic, at, raw_summary, "
                "matched_by, note) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source_key) DO NOTHING",
                ((r.get("delivery_id"), r["source_key"], r["kind"], r.get("action"), r.get("status"),
                  r.get("diagnostic"), r.get("at") or stamp, r.get("raw_summary"),
                  r.get("matched_by") or ("ledger" if r.get("delivery_id") else None), r.get("note"))
                 for r in receipts),
            )
            added = db.total_changes - before
            db.executemany("INSERT INTO seen_messages (source, key, at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                           ((source, key, stamp) for key in keys))
            db.executemany("INSERT INTO report_keys (key, source, message_key, at) VALUES (?,?,?,?) "
                           "ON CONFLICT DO NOTHING", ((key, source, message, stamp) for key, message in reports))
            return added

        return self._write(work)  # type: ignore[return-value]


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our back)."""
    return [part.strip() for part in script.split(";") if part.strip()]
