"""The demo servers are a leaf: only `relcomm demo` uses them, and they stand apart from the core.

* Nothing in relcomm_tui outside demo/ and commands/demo.py imports relcomm_tui.demo, so the
  core never depends on a test or demo server (and never pays aiosmtpd's import at start-up).
* demo/ imports nothing of relcomm_tui but itself, common/ and the one xtext codec
  (transport/xtext.py), and nothing from tests/: fault injection lives in tests/
  (faulty_mailserver.py, smtp_faults.py, http_receiver.py).
* The modules inside demo/ import each other one way (no cycle, TYPE_CHECKING imports included).

Imports are read from the source (ast), including those inside functions and under
TYPE_CHECKING, so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import relcomm_tui

PACKAGE = Path(relcomm_tui.__file__).resolve().parent
DEMO = "relcomm_tui.demo"
DEMO_USERS = {"relcomm_tui.commands.demo"}
DEMO_MAY_USE = ("relcomm_tui.common", "relcomm_tui.transport.xtext")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `module`'s source imports, absolute names, relative imports resolved.

    `from X import Y` counts as importing X and X.Y (Y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def package_modules() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        modules[name] = imported_modules(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py")
    return modules


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_scanner_sees_every_way_of_importing_the_demo():
    # Without this, a scanner that missed relative imports would pass every check below vacuously.
    cases = {
        "import relcomm_tui.demo.mailserver": "relcomm_tui.plan.loader",
        "from relcomm_tui.demo import mailserver": "relcomm_tui.plan.loader",
        "from ..demo.mailserver import LoopbackMailServer": "relcomm_tui.commands.send",
        "from .. import demo": "relcomm_tui.commands.send",
        "def later():\n    from ...demo import reports": "relcomm_tui.tui.screens.send",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from relcomm_tui.demo.store import AcceptedMessage": "relcomm_tui.receipts.parse",
    }
    for source, module in cases.items():
        assert any(within(name, DEMO) for name in imported_modules(source, module)), source
    assert not any(within(n, DEMO) for n in imported_modules("from ..delivery import engine", "relcomm_tui.commands.send"))
    assert any(within(n, DEMO) for n in imported_modules("from . import store", DEMO, is_package=True))


def test_nothing_outside_the_demo_imports_it():
    modules = package_modules()
    assert "relcomm_tui.demo.mailserver" in modules and "relcomm_tui.commands.demo" in modules  # the scan saw the tree
    offenders = {
        name: sorted(n for n in imports if within(n, DEMO))
        for name, imports in modules.items()
        if not within(name, DEMO) and name not in DEMO_USERS
    }
    offenders = {name: found for name, found in offenders.items() if found}
    assert offenders == {}, "only `relcomm demo` (commands/demo.py) may use the demo servers"
    assert any(within(n, DEMO) for n in modules["relcomm_tui.commands.demo"])  # the one user really does


def test_the_demo_stands_apart_from_the_core_and_the_tests():
    for name, imports in package_modules().items():
        if not within(name, DEMO):
            continue
        ours = {n for n in imports if within(n, "relcomm_tui")}
        outside = sorted(n for n in ours if not within(n, DEMO) and not any(within(n, m) for m in DEMO_MAY_USE)
                         and n not in ("relcomm_tui", "relcomm_tui.transport"))  # `from ..transport import xtext`
        assert outside == [], f"{name} reaches into the core: {outside}"
        test_support = sorted(n for n in imports if n.split(".")[0] in ("tests", "faulty_mailserver", "smtp_faults",
                                                                         "http_receiver", "conftest"))
        assert test_support == [], f"{name} imports test support: {test_support}"


def test_the_demo_modules_import_each_other_one_way():
    modules = package_modules()
    graph = {
        name: {other for other in modules if within(other, DEMO) and other != name and other in imports}
        for name, imports in modules.items()
        if within(name, DEMO)
    }
    assert len(graph) >= 5, graph  # the server is split: session, esmtp, store, reports, mailserver...
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(name):] + [name])
        visiting.append(name)
        for other in sorted(graph[name]):
            visit(other)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_command_line_does_not_load_the_demo_servers_until_asked():
    # `relcomm send` and friends start without aiosmtpd or the demo package loaded.
    code = (
        "import sys, relcomm_tui.commands.main\n"
        "print(sorted(m for m in sys.modules if m.startswith(('relcomm_tui.demo', 'aiosmtpd'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
