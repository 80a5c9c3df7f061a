"""Parse throughput over the bounce corpus.

    /work/venv/bin/python bench/parse_corpus.py [corpus_dir] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relcomm_tui.receipts.parse import parse_message  # noqa: E402


def find_corpus(arg: str | None) -> Path:
    for c in (arg, os.environ.get("RELCOMM_BOUNCE_CORPUS"), REPO.parent / "shared" / "corpora" / "bounces",
              "/work/shared/corpora/bounces"):
        if c and (Path(c) / "emails").is_dir():
            return Path(c)
    sys.exit("bounce corpus not found (pass it or set RELCOMM_BOUNCE_CORPUS)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    corpus = find_corpus(args.corpus)
    raws = [p.read_bytes() for p in sorted((corpus / "emails").iterdir()) if p.is_file()]
    nbytes = sum(len(r) for r in raws)
    for r in raws[:20]:  # warm-up (regex compilation, imports)
        parse_message(r)
    best = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for r in raws:
            parse_message(r)
        best = min(best, time.perf_counter() - t0)
    print(f"parsed {len(raws)} messages ({nbytes / 1e6:.1f} MB) in {best:.3f}s (best of {args.rounds}): "
          f"{len(raws) / best:,.0f} messages/s, {nbytes / 1e6 / best:.1f} MB/s")


if __name__ == "__main__":
    main()
