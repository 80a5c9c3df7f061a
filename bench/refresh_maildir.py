"""Incremental Maildir refresh: build a big Maildir, read it all, add a few messages,
time the refresh that picks up only those.

    /work/venv/bin/python bench/refresh_maildir.py [--messages 50000] [--added 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relcomm_tui.receipts.sources import MaildirSource  # noqa: E402

TEMPLATE = (
    "From: MAILER-DAEMON@mx.example.org\r\nTo: releases@example.com\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b{i}@mx.example.org>\r\n\r\n"
    "<user{i}@example.net>: host mx.example.net said: 550 5.1.1 User unknown\r\n"
)


def write_messages(md: Path, start: int, count: int) -> None:
    host = "bench.example"
    for i in range(start, start + count):
        sub, suffix = ("cur", ":2,S") if i % 2 else ("new", "")
        name = f"{1700000000 + i}.M{i}P{os.getpid()}.{host}{suffix}"
        with open(md / sub / name, "w") as fh:
            fh.write(TEMPLATE.format(i=i))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--added", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relcomm-maildir-bench-") as tmp:
        md = Path(tmp) / "Maildir"
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True)
        t0 = time.perf_counter()
        write_messages(md, 0, args.messages)
        build = time.perf_counter() - t0

        seen: set[str] = set()
        src = MaildirSource(md)
        t0 = time.perf_counter()
        n_full = 0
        for msg in src.read_new(seen.__contains__):
            seen.add(msg.key)
            n_full += 1
        full = time.perf_counter() - t0

        write_messages(md, args.messages, args.added)
        opened_before = src.count_opened
        t0 = time.perf_counter()
        n_new = 0
        for msg in src.read_new(seen.__contains__):
            seen.add(msg.key)
            n_new += 1
        refresh = time.perf_counter() - t0
        assert n_new == args.added and src.count_opened - opened_before == args.added

    print(f"built {args.messages} messages in {build:.2f}s")
    print(f"full read:           {n_full} messages in {full:.3f}s ({n_full / full:,.0f} messages/s)")
    print(f"incremental refresh: {n_new} new of {args.messages + args.added} in {refresh * 1000:.1f} ms "
          f"(opened {n_new} files)")


if __name__ == "__main__":
    main()
