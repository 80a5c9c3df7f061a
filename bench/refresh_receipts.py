"""Whole receipts refresh (read + parse + correlate + ledger) on a big Maildir: the first full
read, then a refresh after a few new reports arrive, which must stay well under a second.

    /work/venv/bin/python bench/refresh_receipts.py [--messages 50000] [--added 10] [--deliveries 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relcomm_tui.store.ledger import DeliveryIntent, Ledger  # noqa: E402
from relcomm_tui.plan.loader import load_plan  # noqa: E402
from relcomm_tui.receipts.refresh import refresh  # noqa: E402

DSN = (
    "From: MAILER-DAEMON@mx.example.org\r\nTo: receipts@example.com\r\nSubject: Delivery Status Notification\r\n"
    "Date: {date}\r\nMessage-ID: <dsn{i}@mx.example.org>\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n--B\r\n'
    "Content-Type: text/plain\r\n\r\nreport\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.org\r\nOriginal-Envelope-Id: {envid}\r\n\r\n"
    "Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n--B--\r\n"
)


DATE = formatdate(time.time() + 3600)  # after the send


def write_reports(md: Path, start: int, count: int, deliveries: list) -> None:
    for i in range(start, start + count):
        d = deliveries[i % len(deliveries)]
        failed = i % 7 == 0
        name = f"{1700000000 + i}.M{i}P{os.getpid()}.bench" + (":2,S" if i % 2 else "")
        with open(md / ("cur" if i % 2 else "new") / name, "w") as fh:
            fh.write(DSN.format(i=i, envid=d.envelope_id if i % 3 else "foreign", rcpt=d.recipient_key, date=DATE,
                                action="failed" if failed else "delivered", status="5.1.1" if failed else "2.0.0"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--added", type=int, default=10)
    ap.add_argument("--deliveries", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relcomm-receipts-bench-") as tmp:
        root = Path(tmp)
        members = "\n".join(f'  "Person {i} <person{i}@example.com>",' for i in range(args.deliveries))
        (root / "plan.toml").write_text(
            'format = 1\n[release]\nname = "Bench"\nversion = "1.0"\n[sender]\nfrom = "r@example.com"\n'
            '[receipts]\nsources = [{ maildir = "receipts" }]\n'
            f'[[stakeholders]]\nid = "all"\nmembers = [\n{members}\n]\n'
            '[[communiques]]\nid = "news"\nto = ["all"]\nchannel = "email"\nsubject = "s"\nbody = "b"\n',
            encoding="utf-8")
        plan = load_plan(root / "plan.toml")
        md = root / "receipts"
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True)
        with Ledger.open(root / "state") as ledger:
            ledger.ensure_deliveries("1.0", [DeliveryIntent("news", r.key, r.display, g.id, "email")
                                             for g, r in plan.audience(plan.communiques[0])], domain="example.com")
            # Sent, so reports (dated after) can be credited to them.
            ledger.apply([Ledger.sending_work(d.id, None) for d in ledger.deliveries("1.0")])
            ledger.apply([Ledger.outcome_work(d.id, "accepted", "250 ok") for d in ledger.deliveries("1.0")])
            deliveries = ledger.deliveries("1.0")
            write_reports(md, 0, args.messages, deliveries)

            t0 = time.perf_counter()
            full = refresh(plan, ledger)
            full_time = time.perf_counter() - t0

            write_reports(md, args.messages, args.added, deliveries)
            t0 = time.perf_counter()
            again = refresh(plan, ledger)
            again_time = time.perf_counter() - t0

            t0 = time.perf_counter()
            idle = refresh(plan, ledger)
            idle_time = time.perf_counter() - t0
        print(f"first refresh of {args.messages} reports: {full_time:.2f} s "
              f"({full.read / full_time:.0f} messages/s; {full.matched} matched, {full.unmatched} unmatched)")
        print(f"refresh with {args.added} new of {args.messages + args.added}: {again_time * 1000:.0f} ms "
              f"({again.read} messages read, {again.matched} matched)")
        print(f"refresh with nothing new: {idle_time * 1000:.0f} ms ({idle.read} messages read)")


if __name__ == "__main__":
    from relcomm_tui.store.ledger import LedgerError

    try:
        main()
    except LedgerError as error:  # e.g. the ledger key in the settings folder is not usable
        sys.exit(f"cannot use the ledger: {error.message}\n  hint: {error.hint}")
