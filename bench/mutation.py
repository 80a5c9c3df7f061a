"""Mutation testing of the core (issue 15): the score per module and the mutants that survive.

    python3 -m venv .venv-mutation && .venv-mutation/bin/pip install -e '.[test,mutation]'   # its own venv: see the README
    python bench/mutation.py                 # every module in [tool.relcomm.mutation]
    python bench/mutation.py lock correlate  # some of them
    python bench/mutation.py --report        # only print what earlier runs found

Each module runs mutmut 3 in its own work folder (bench/.mutation/NAME: a copy of the package, the
tests and a pyproject.toml whose [tool.mutmut] names that one file and its tests), with two workers
(`--workers 1` on a machine someone else is using). Every mutant the module's patterns name is run
again each time (mutmut re-runs mutants it is given by name); `--report` reads the last verdicts. A mutant counts as
killed when a test failed (or it timed out: the change made the tests hang); listed equivalents
(tests/mutation_equivalents.txt: `mutant-name  reason`) are left out of the score.

Why mutmut and not cosmic-ray: mutmut 3 runs each mutant only against the tests that reach the
mutated function (it records that once) and switches mutants at run time without rewriting files
between runs, so one worker gets through a module in minutes; cosmic-ray needs a session database,
a separate baseline step and runs the whole selection for every mutant.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".mutation"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.txt"
COPIED = ("relcomm_tui", "tests", "sample_plans", "themes", "docs")
KILLED = {1, 3, -24, 24, 36, 152, 255}  # a test failed, or the tests hung (mutmut's timeout)
SURVIVED = {0}
NO_TESTS = {5, 33}


def modules() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data["tool"]["relcomm"]["mutation"]["modules"]


def equivalents() -> dict[str, str]:
    found: dict[str, str] = {}
    if EQUIVALENTS.exists():
        for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.strip().partition(" ")
                found[name] = reason.strip()
    return found


def prepare(name: str, module: dict) -> Path:
    """The module's work folder, with the current code and tests (mutmut's cache kept)."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for part in COPIED:
        target = folder / part
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / part, target, ignore=shutil.ignore_patterns("__pycache__", ".relcomm"))
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text = text.split("\n[tool.mutmut]")[0]
    text += ("\n[tool.mutmut]\n"
             'source_paths = ["relcomm_tui"]\n'
             # mutmut runs the tests from its mutants/ copy, which holds only the code and tests:
             # the tests that load the sample plan or read the docs (readiness, headers, consent) need them too.
             f"also_copy = {json.dumps([part for part in COPIED if part not in ('relcomm_tui', 'tests')])}\n"
             f"only_mutate = {json.dumps([module['file']])}\n"
             f"pytest_add_cli_args_test_selection = {json.dumps(module['tests'])}\n"
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
             # A mutant that makes the tests hang is stopped at 4x their CPU time (+4 s), not mutmut's 30x:
             # CPU time, so a loaded machine does not turn a slow run into a false "killed".
             "timeout_multiplier = 2.0\n")
    (folder / "pyproject.toml").write_text(text, encoding="utf-8")
    return folder


def run(name: str, module: dict, workers: int) -> float:
    folder = prepare(name, module)
    started = time.monotonic()
    patterns = [f"{dotted(module['file'])}.{pattern}" for pattern in module["mutants"]]
    env = dict(os.environ, RELCOMM_TEST_SEED=os.environ.get("RELCOMM_TEST_SEED", ""))
    # mutmut's own output (why it stopped, when it does) goes to the work folder's mutmut.log.
    with open(folder / "mutmut.log", "wb") as log:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(workers), *patterns], cwd=folder, env=env,
                       stdout=log, stderr=subprocess.STDOUT, check=False)
    return time.monotonic() - started


def dotted(file: str) -> str:
    return file.removesuffix(".py").replace("/", ".")


def verdicts(name: str, module: dict) -> dict[str, int | None]:
    meta = WORK / name / "mutants" / (module["file"] + ".meta")
    if not meta.exists():
        return {}
    try:
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    except (ValueError, KeyError):  # a run stopped while mutmut was writing it: start that module afresh
        print(f"{name}: {meta} is unreadable (a run was stopped while writing it): delete {WORK / name / 'mutants'}"
              " and run again", file=sys.stderr)
        return {}
    wanted = [f"{dotted(module['file'])}.{pattern}" for pattern in module["mutants"]]
    return {key: code for key, code in codes.items() if any(fnmatch.fnmatch(key, w) for w in wanted)}


def report(name: str, module: dict, seconds: float | None = None) -> tuple[int, int, list[str]]:
    codes = verdicts(name, module)
    known = equivalents()
    counted = {k: c for k, c in codes.items() if k not in known}
    killed = sum(c in KILLED for c in counted.values())
    survivors = sorted(k for k, c in counted.items() if c in SURVIVED or c in NO_TESTS)
    unchecked = sum(c is None for c in counted.values())
    total = killed + len(survivors)
    score = 100.0 * killed / total if total else 0.0
    took = f", {seconds / 60:.1f} min" if seconds is not None else ""
    print(f"{name:10} {module['file']:42} {killed:4}/{total:<4} killed  {score:5.1f}%"
          f"  ({len(codes)} mutants, {len(codes) - len(counted)} listed equivalent, {unchecked} not run yet{took})")
    for survivor in survivors:
        print(f"    survived: {survivor}   (mutmut show {survivor}, in bench/.mutation/{name})")
    return killed, total, survivors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="modules from [tool.relcomm.mutation.modules] (default: all)")
    parser.add_argument("--report", action="store_true", help="print earlier results without running")
    parser.add_argument("--workers", type=int, default=2, help="mutants run at once (default 2: the issue's 2 cores)")
    options = parser.parse_args()
    table = modules()
    names = options.names or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"unknown module(s): {', '.join(unknown)}; known: {', '.join(table)}", file=sys.stderr)
        return 2
    for name in names:
        seconds = None if options.report else run(name, table[name], options.workers)
        report(name, table[name], seconds)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
