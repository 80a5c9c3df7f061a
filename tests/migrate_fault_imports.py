"""One-off (issue 12, branch i12-demo): point test files at the tests' fault-injecting servers.

The fault rules, delays and command log left relcomm_tui/demo/ for tests/faulty_mailserver.py, and
the webhook receiver's scripts and hangs for tests/http_receiver.py. A test written before that
imports them from relcomm_tui.demo; this rewrites such a file in place (idempotent):

    python tests/migrate_fault_imports.py tests/*.py bench/*.py

* fault rules (TempFail, PermFail, ...) come from `faulty_mailserver`, and a file that imports one
  or uses a fault feature (`.faults`, `.commands`, `rcpt_delay`, ...) gets `FaultyMailServer`
  for `LoopbackMailServer`;
* `xtext_encode` becomes `relcomm_tui.transport.xtext.encode`, `open_maildir` comes from demo.store;
* a file that uses `hang`, `pagerduty_reply`, `ntfy_reply` or scripts the receiver (`.script(`,
  `.answer(`, `requests_for`, `wait_for(`, ...) gets `ScriptedReceiver` and `Reply` from `http_receiver`.

Delete this file once every branch of issue 12's round is merged.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FAULT_NAMES = {"TempFail", "PermFail", "DropConnection", "Delay", "Garbage", "CloseAfter", "FaultTable", "FaultRule"}
FAULT_USE = re.compile(r"\.faults\b|\bfaults=|connection_faults|(?:server|smtp)\.commands\b|commands_named|rcpt_delay|data_delay"
                       r"|connections_dropped|advertise_starttls|bounce_mode|messages_for|wait_for_messages")
RECEIVER_NAMES = {"hang", "pagerduty_reply", "ntfy_reply"}
RECEIVER_USE = re.compile(r"\.script\(|\.answer\(|serve_directory|requests_for|\.wait_for\(|\.stored\(|hang=")
SKIP = {"faulty_mailserver.py", "smtp_faults.py", "http_receiver.py", "migrate_fault_imports.py"}


def imports_from(tree: ast.AST, module: str) -> list[ast.ImportFrom]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module == module]


def names(node: ast.ImportFrom) -> list[tuple[str, str | None]]:
    return [(a.name, a.asname) for a in node.names]


def spell(module: str, items: list[tuple[str, str | None]]) -> str:
    parts = sorted({f"{n} as {a}" if a else n for n, a in items})
    return f"from {module} import {', '.join(parts)}"


def replace_node(lines: list[str], node: ast.ImportFrom, new: list[str]) -> None:
    first, last = node.lineno - 1, node.end_lineno - 1
    indent = re.match(r"\s*", lines[first]).group(0)
    tail = lines[last][node.end_col_offset:].rstrip("\n")
    comment = "  " + tail.strip() if tail.strip().startswith("#") else ""
    lines[first:last + 1] = [indent + text + comment + "\n" for text in new]


def migrate(path: Path) -> bool:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    rename: dict[str, str] = {}
    edits: list[tuple[ast.ImportFrom, list[str]]] = []

    # A file that already imports the tests' servers was written knowing both: leave its choice.
    knows_faulty = bool(imports_from(tree, "faulty_mailserver"))
    knows_scripted = bool(imports_from(tree, "http_receiver"))
    for node in imports_from(tree, "relcomm_tui.demo.mailserver"):
        items = names(node)
        faulty = not knows_faulty and (any(n in FAULT_NAMES for n, _ in items) or bool(FAULT_USE.search(source)))
        keep, fault, new = [], [], []
        for name, alias in items:
            if name in FAULT_NAMES:
                fault.append((name, alias))
            elif name == "LoopbackMailServer" and faulty:
                fault.append(("FaultyMailServer", alias))
                if not alias:
                    rename["LoopbackMailServer"] = "FaultyMailServer"
            elif name == "xtext_encode":
                new.append(spell("relcomm_tui.transport.xtext", [("encode", alias or "xtext_encode")]))
            elif name == "open_maildir":
                new.append(spell("relcomm_tui.demo.store", [(name, alias)]))
            else:
                keep.append((name, alias))
        if not fault and not new:  # nothing moved for this file
            continue
        out = ([spell("faulty_mailserver", fault)] if fault else []) + new
        out += [spell("relcomm_tui.demo.mailserver", keep)] if keep else []
        edits.append((node, out))

    for node in imports_from(tree, "relcomm_tui.demo.webhook_receiver"):
        items = names(node)
        if knows_scripted or not (any(n in RECEIVER_NAMES for n, _ in items) or RECEIVER_USE.search(source)):
            continue
        moved = []
        for name, alias in items:
            if name == "WebhookReceiver":
                moved.append(("ScriptedReceiver", alias))
                if not alias:
                    rename["WebhookReceiver"] = "ScriptedReceiver"
            else:
                moved.append((name, alias))
        edits.append((node, [spell("http_receiver", moved)]))

    if not edits:
        return False
    for node, new in sorted(edits, key=lambda e: -e[0].lineno):
        replace_node(lines, node, new)
    text = "".join(lines)
    for old, new_name in rename.items():
        text = re.sub(rf"\b{old}\b", new_name, text)
    if text == source:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    changed = [p for p in map(Path, argv) if p.suffix == ".py" and p.name not in SKIP and migrate(p)]
    for path in changed:
        print(f"migrated {path}")
    print(f"{len(changed)} files rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
