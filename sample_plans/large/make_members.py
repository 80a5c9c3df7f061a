#!/usr/bin/env python3
"""Write the members files of the large sample plan: 10,000 customers, 500 partners, 40 support staff.

The CSVs are generated (deterministically) rather than checked in, so the repository and the wheel
stay small. Run it before validating the plan:

    python sample_plans/large/make_members.py            # writes sample_plans/large/stakeholders/
    python sample_plans/large/make_members.py OTHER_DIR  # writes OTHER_DIR/stakeholders/ (tests, bench)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

FIRST = ["Ada", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Margaret", "Alan", "Radia", "Dennis",
         "Frances", "John", "Hedy", "Tim", "Katherine", "Donald", "Sophie", "Niklaus", "Joan", "Guido",
         "Élodie", "Jürgen", "Søren", "Zoë", "Ngozi", "Haruki", "Priya", "Mateo", "Aylin", "Oluwaseun"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Thompson", "Liskov", "Dijkstra", "Hamilton", "Turing", "Perlman",
        "Ritchie", "Allen", "McCarthy", "Lamarr", "Berners-Lee", "Johnson", "Knuth", "Wilson", "Wirth",
        "Clarke", "van Rossum", "Okafor", "Murakami", "Raman", "García", "Yılmaz", "Adeyemi"]
REGIONS = ["EMEA", "AMER", "APAC"]
TIERS = ["starter", "business", "enterprise"]

COUNTS = {"customers": 10_000, "partners": 500, "support": 40}


def ascii_slug(text: str) -> str:
    table = str.maketrans({"É": "E", "é": "e", "ü": "u", "ø": "o", "ë": "e", "í": "i", "ı": "i", " ": "", "-": ""})
    return text.translate(table).lower()


def people(group: str, count: int):
    for index in range(count):
        first = FIRST[index % len(FIRST)]
        last = LAST[(index // len(FIRST)) % len(LAST)]
        company = f"Company {index // 4 + 1:04d}"
        domain = f"c{index // 4 + 1:04d}.example.com" if group == "customers" else f"{group}.example.net"
        email = f"{ascii_slug(first)}.{ascii_slug(last)}.{index}@{domain}"
        yield [f"{first} {last}", email, company, REGIONS[index % 3], TIERS[index % len(TIERS)]]


def write(folder: Path) -> list[Path]:
    target = folder / "stakeholders"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for group, count in COUNTS.items():
        path = target / f"{group}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["name", "email", "company", "region", "tier"])
            writer.writerows(people(group, count))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent
    for path in write(folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
