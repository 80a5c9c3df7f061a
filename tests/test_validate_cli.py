"""`relcomm validate` and `relcomm schema` as a user runs them: a real subprocess, real exit codes, real output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plan_helpers import base_plan, write_plan

from relcomm_tui.plan.schema import json_schema

ROOT = Path(__file__).resolve().parent.parent
ORION = ROOT / "sample_plans" / "orion" / "plan.toml"
LARGE = ROOT / "sample_plans" / "large"


def relcomm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=60)


def test_the_orion_sample_validates() -> None:
    done = relcomm("validate", "--allow-commands", str(ORION))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "no problems in 7 communiques to 6 groups (36 recipients)"


def broken_plan(folder: Path) -> Path:
    data = base_plan()
    data["communiques"][1]["to"] = ["opz"]                      # error: unknown group (and ops unreached)
    del data["release"]["gate"]                                 # warning: no gate
    return write_plan(folder, data, {"announce.md.j2": "Hello {{ recipient.name }}\nTODO: write\n"})


def test_errors_exit_1_with_places_hints_and_a_summary(tmp_path: Path) -> None:
    plan = broken_plan(tmp_path)
    done = relcomm("validate", str(plan), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "announce.md.j2:2: error[placeholder-left] announce: the rendered text still contains 'TODO' " \
           "(for 2 recipients, e.g. ada@acme.example.com)" in lines
    unknown = next(line for line in lines if "error[group-unknown]" in line)
    assert unknown.startswith("plan.toml:") and "'opz'" in unknown
    assert lines[lines.index(unknown) + 1].startswith("    hint: did you mean 'ops'?")
    assert lines[-1] == "2 errors, 2 warnings in 2 communiques to 2 groups (3 recipients)"
    assert [line.split()[1].split("[")[0] for line in lines if "[" in line and line.split()[1].startswith(("error", "warning"))] \
        == ["error", "error", "warning", "warning"]
    assert done.stderr == ""


def test_json_output(tmp_path: Path) -> None:
    done = relcomm("validate", "--json", "--no-gate", str(broken_plan(tmp_path)))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert set(report) == {"plan", "ok", "findings", "summary"}
    assert report["ok"] is False and report["plan"] == str(tmp_path / "plan.toml")
    assert {f["id"] for f in report["findings"]} == {"group-unknown", "placeholder-left", "group-unused"}
    finding = next(f for f in report["findings"] if f["id"] == "group-unknown")
    assert set(finding) == {"id", "severity", "message", "hint", "file", "line", "column", "keypath", "group", "communique"}
    assert finding["communique"] == "ops-notice" and finding["keypath"] == "communiques[1].to" and finding["line"] > 0
    assert report["summary"]["errors"] == 2 and report["summary"]["warnings"] == 1
    assert report["summary"]["recipients"] == 3 and report["summary"]["communiques"] == 2


def test_a_plan_that_cannot_load_exits_2_without_a_traceback(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["audience"] = data["communiques"][0].pop("to")
    plan = write_plan(tmp_path, data)
    done = relcomm("validate", str(plan))
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "unknown key `audience`" in done.stderr and "did you mean `to`?" in done.stderr
    done = relcomm("validate", "--json", str(plan))
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False and "findings" not in report
    assert report["load_error"]["keypath"] == "communiques[0].audience"
    assert report["load_error"]["hint"] == "did you mean `to`?"


def test_a_missing_plan_exits_2(tmp_path: Path) -> None:
    done = relcomm("validate", str(tmp_path / "absent.toml"))
    assert done.returncode == 2 and "no such file" in done.stderr and "Traceback" not in done.stderr


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    data = base_plan()
    del data["release"]["gate"]
    done = relcomm("validate", str(write_plan(tmp_path, data)))
    assert done.returncode == 0
    assert "warning[gate-none]" in done.stdout and done.stdout.rstrip().endswith("(3 recipients)")


def test_no_gate_skips_a_failing_gate(tmp_path: Path) -> None:
    data = base_plan()
    data["release"]["gate"] = "echo 'rollout at 40%'; exit 1"
    plan = write_plan(tmp_path, data)
    failed = relcomm("validate", "--allow-commands", str(plan))
    assert failed.returncode == 1 and "error[gate-failed] the release gate failed (exit 1): rollout at 40%" in failed.stdout
    assert relcomm("validate", "--no-gate", str(plan)).returncode == 0


@pytest.fixture(scope="module")
def large_plan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("large") / "large"
    shutil.copytree(LARGE, folder, ignore=shutil.ignore_patterns("stakeholders", ".relcomm"))
    subprocess.run([sys.executable, str(folder / "make_members.py"), str(folder)], check=True, capture_output=True)
    return folder / "plan.toml"


def test_the_large_plan_validates_with_no_errors(large_plan: Path) -> None:
    done = relcomm("validate", "--json", "--allow-commands", str(large_plan))
    assert done.returncode == 0, done.stdout[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["findings"] == []
    assert report["summary"]["recipients"] >= 10_000


def test_schema_command_prints_the_generated_schema() -> None:
    done = relcomm("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == json_schema()


def test_checked_in_schema_is_current() -> None:
    checked_in = json.loads((ROOT / "docs" / "plan.schema.json").read_text(encoding="utf-8"))
    assert checked_in == json_schema(), "run: relcomm schema -o docs/plan.schema.json"
