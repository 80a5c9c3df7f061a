"""The ledger's inbound side: receipts credited to deliveries, the keys of messages already read,
report keys for content deduplication. Recorded in one transaction per refresh, so a crash never
counts a report without marking its message read, or the other way round.

A part of Ledger (store/ledger.py), which holds the connection and the write discipline.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable, Sequence

from .records import (
    _RECEIPT_COLUMNS,
)
from .states import (
    now,
)


class InboundBook:
    """Reports received and messages read: a part of Ledger, using its `_db`, `_lock`, `_reading()` and `_write()`."""

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
