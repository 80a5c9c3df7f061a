"""`relcomm schema [--output FILE]`: print the plan format's JSON Schema (for editors: taplo, Even Better TOML)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..plan.schema import json_schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", metavar="FILE", help="write it to FILE instead of printing it")


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as error:
            print(f"relcomm: cannot write {args.output}: {error.strerror}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0
