"""Property-based fuzzing of plans (issue 6): take a valid plan (the Orion sample, the small test
plan), mutate it (wrong types, missing and unknown keys, huge values, deep nesting, control
characters, invalid UTF-8, broken and enormous member lists, hostile templates) and load it.

The property: every outcome is either a load error (`PlanError`, with a message) or a plan that
`run_checks` turns into a list of findings. Any other exception is a crash a user would see as a
traceback. A handful of the nastiest plans also go through the real `relcomm validate` in a
subprocess: exit 1 or 2, no traceback.

Sizes: RELCOMM_CAMPAIGN_PLAN_EXAMPLES (hypothesis examples), RELCOMM_CAMPAIGN_PLAN_MEMBERS (the
enormous member lists). Hypothesis is derandomized (the same examples on every run) and keeps no
example database, so the test leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

import campaign
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_helpers import FILES, base_plan

from relcomm_tui.checks.rules import run_checks

from relcomm_tui.checks.findings import Finding
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.loader import PlanError

ROOT = Path(__file__).resolve().parent.parent
ORION = ROOT / "sample_plans" / "orion"

EXAMPLES = campaign.scale("PLAN_EXAMPLES", 150)
MEMBERS = campaign.scale("PLAN_MEMBERS", 20_000)

# -- seeds -----------------------------------------------------------------------------------------


def orion_seed() -> tuple[dict, dict[str, bytes]]:
    files = {str(p.relative_to(ORION)): p.read_bytes() for p in ORION.rglob("*")
             if p.is_file() and ".relcomm" not in p.parts and p.name != "plan.toml"}
    return tomllib.loads((ORION / "plan.toml").read_text(encoding="utf-8")), files


def small_seed() -> tuple[dict, dict[str, bytes]]:
    return base_plan(), {name: text.encode() for name, text in FILES.items()}


SEEDS = {"orion": orion_seed(), "small": small_seed()}

# -- hostile values --------------------------------------------------------------------------------

NASTY = [
    "", " ", "\t", "../../etc/passwd", "/etc/passwd", "~", "~root/x", "C:\\Windows\\win.ini", "a/../../b",
    "{{ 7 * 7 }}", "{{ ''.__class__.__mro__ }}", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}", "{% include '/etc/passwd' %}", "{{", "{%", "}}", "=?utf-8?q?x=0D=0ABcc:_evil@x.example?=",
    "a\r\nBcc: evil@x.example", "\x00", "\x1b[2J", "\u202e", "\ufeff", "\u2028", "🙂" * 50, "Ada <ada@example.com>",
    "ada@", "@", "<>", "<<<@>>>", '"', "'''", '"""', "\\", "\\u0000", "NaN", "inf", "-0", "9" * 400,
    "releases.example.com\r\n", "${HOME}", "$(id)", "`id`", "; rm -rf /", "%s%s%s%n", "<script>alert(1)</script>",
    "x" * 5000, "\n" * 500,
]
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x9F) | st.sampled_from("\u2028\u2029\ufeff\u202e\ud7ff\uffff")
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=CONTROL, max_size=12),
    st.sampled_from(NASTY),
    st.integers(min_value=1_000, max_value=200_000).map(lambda n: "x" * n),
)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 65536, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), TEXT, st.dates(), st.times(),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                     max_leaves=12)
BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\x80", b"\xe2\x82",
             b"\r", b"\x1a", b"\xef\xbb\xbf"]


def paths_in(node, prefix=()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths_in(value, (*prefix, index))
    return found


def get(node, path):
    for part in path:
        node = node[part]
    return node


def nest(value, depth: int, kind: str):
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def drop_none(node):
    """TOML has no null: a None from the strategies means "leave the key out"."""
    if isinstance(node, dict):
        return {k: drop_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [drop_none(v) for v in node if v is not None]
    return node


def mutate(draw, data: dict, files: dict[str, bytes]) -> tuple[bytes, dict[str, bytes], list[str]]:
    """Apply a few drawn mutations; the plan's bytes, the other files, and what was done (for the report)."""
    done: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = paths_in(data)
        op = draw(st.sampled_from(["same type", "same type", "same type", "replace", "delete", "add", "nest",
                                   "members", "csv", "template"]))
        path = draw(st.sampled_from(paths)) if paths else ()
        parent = get(data, path[:-1]) if path else None
        if op == "same type" and path:
            # A hostile value of the type the key wants: gets past the schema into the checks.
            old = parent[path[-1]]
            if isinstance(old, bool):
                parent[path[-1]] = draw(st.booleans())
            elif isinstance(old, int):
                parent[path[-1]] = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
            elif isinstance(old, list) and all(isinstance(v, str) for v in old):
                parent[path[-1]] = draw(st.lists(TEXT, max_size=5))
            else:
                parent[path[-1]] = draw(TEXT)
        elif op == "replace" and path:
            parent[path[-1]] = draw(VALUE)
        elif op == "delete" and path:
            if isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        elif op == "add":
            target = get(data, path) if path and isinstance(get(data, path), (dict, list)) else data
            if isinstance(target, dict):
                target[draw(TEXT)] = draw(VALUE)
            else:
                target.append(draw(VALUE))
        elif op == "nest" and path:
            parent[path[-1]] = nest(parent[path[-1]], draw(st.integers(min_value=2, max_value=40)),
                                    draw(st.sampled_from(["list", "dict"])))
        elif op == "members":
            groups = [g for g in data.get("stakeholders", []) if isinstance(g, dict)] if isinstance(data.get("stakeholders"), list) else []
            if groups:
                group = draw(st.sampled_from(groups))
                count = draw(st.integers(min_value=0, max_value=3_000))
                entry = draw(st.one_of(st.sampled_from(["Ada <ada@example.com>", "ada@example.com", "Front desk",
                                                        "x" * 300 + "@example.com"]), TEXT))
                group["members"] = [entry] * count if draw(st.booleans()) else \
                    [f"P{i} <p{i}@example.com>" for i in range(count)]
        elif op == "csv":
            name = draw(st.sampled_from(sorted(n for n in files if n.endswith(".csv")) or ["customers.csv"]))
            files[name] = draw(st.one_of(
                st.binary(max_size=200),
                st.sampled_from([b"", b"\xef\xbb\xbf", b"name,email\n", b"email\nx@y\n", b'name,email\n"unclosed,x@y\n',
                                 b"name,email,name\n", b"name,email\nA,a@x.example,extra\n", b"name,email\n\x00,\x00\n",
                                 b"name,email\nA\r\nB,a@x.example\n"]),
                st.integers(min_value=0, max_value=3_000).map(
                    lambda n: b"name,email,company\n" + b"".join(b"P%d,p%d@example.com,C\n" % (i, i) for i in range(n))),
                TEXT.map(lambda t: ("name,email,company\n" + f'"{t}",a@example.com,"{t}"\n').encode("utf-8", "surrogatepass")),
            ))
        elif op == "template":
            names = sorted(n for n in files if n.endswith(".j2")) or ["announce.md.j2"]
            files[draw(st.sampled_from(names))] = draw(TEXT).encode("utf-8", "surrogatepass")
        done.append(f"{op} {'.'.join(map(str, path))}")
    try:
        text = tomli_w.dumps(drop_none(data)).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as error:
        text = b"# tomli_w could not write this: " + str(error)[:80].encode("utf-8", "replace") + b"\nformat = 1\n"
    # Byte-level damage: what an editor, a bad copy or a hostile author makes.
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        kind = draw(st.sampled_from(["insert", "truncate", "duplicate line", "deep"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(BAD_BYTES)) + text[at:]
        elif kind == "truncate":
            text = text[:at]
        elif kind == "duplicate line":
            lines = text.split(b"\n")
            line = lines[min(at, len(lines) - 1)]
            text = text + b"\n" + line + b"\n"
        else:
            depth = draw(st.integers(min_value=10, max_value=5_000))
            text = b"deep = " + b"[" * depth + b"1" + b"]" * depth + b"\n" + text
        done.append(f"bytes: {kind} at {at}")
    return text, files, done


def write(folder: Path, text: bytes, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (folder / "plan.toml").write_bytes(text)
    return folder / "plan.toml"


def outcome(plan_file: Path) -> str:
    """"load error" or "findings"; raises AssertionError for anything else (a traceback for the user)."""
    try:
        plan = load_plan(plan_file)
    except PlanError as error:
        assert error.message and str(error), "a load error without a message"
        return "load error"
    except Exception as error:  # noqa: BLE001 - the property is exactly "nothing else escapes"
        raise AssertionError(f"load_plan raised {type(error).__name__}: {error}\n{traceback.format_exc()}") from None
    try:
        findings = run_checks(plan, gate=False, secrets=False)
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"run_checks raised {type(error).__name__}: {error}\n{traceback.format_exc()}") from None
    assert isinstance(findings, list) and all(isinstance(f, Finding) and f.message for f in findings)
    return "findings"


# -- the fuzzer ------------------------------------------------------------------------------------


@pytest.mark.campaign
@pytest.mark.slow
def test_mutated_plans_give_a_load_error_or_findings_never_a_crash() -> None:
    counts = {"tried": 0, "held": 0, "load error": 0, "findings": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one_plan(data) -> None:
        seed = data.draw(st.sampled_from(sorted(SEEDS)), label="seed")
        plan, files = SEEDS[seed]
        plan = tomllib.loads(tomli_w.dumps(plan))  # a deep copy
        text, files, done = mutate(data.draw, plan, dict(files))
        data.draw(st.just(done), label="mutations")  # shown when an example fails
        counts["tried"] += 1
        with tempfile.TemporaryDirectory() as folder:
            result = outcome(write(Path(folder) / "plan", text, files))
        counts[result] += 1
        counts["held"] += 1

    try:
        one_plan()
    finally:
        campaign.record("input", f"plans: hypothesis mutations ({counts['load error']} load errors, "
                                 f"{counts['findings']} checked)", tried=counts["tried"], held=counts["held"])
    assert counts["held"] == counts["tried"] > 0
    assert counts["load error"] and counts["findings"]  # the mutations reach both sides


# -- enormous member lists -------------------------------------------------------------------------


@pytest.mark.campaign
@pytest.mark.slow
def test_enormous_member_lists_load_and_check_in_bounded_time(tmp_path: Path) -> None:
    """Inline and CSV, with a bad address every 100 rows: findings are capped, time stays linear."""
    cases = []
    rows = "".join(f"P{i},{'bad@' if i % 100 == 0 else f'p{i}@'}acme.example.com,Acme\n" for i in range(MEMBERS))
    data = base_plan()
    cases.append(("csv", data, {"customers.csv": "name,email,company\n" + rows}))
    data = base_plan()
    data["stakeholders"][1]["members"] = [f"P{i} <{'@' if i % 100 == 0 else f'p{i}@'}vega.example.com>" for i in range(MEMBERS)]
    cases.append(("inline", data, {}))
    data = base_plan()
    data["stakeholders"][1]["members"] = ["Same <same@vega.example.com>"] * MEMBERS
    cases.append(("inline duplicates", data, {}))
    held = 0
    for label, plan_data, extra in cases:
        folder = tmp_path / label.replace(" ", "-")
        files = {**{k: v.encode() for k, v in FILES.items()}, **{k: v.encode() for k, v in extra.items()}}
        started = time.monotonic()
        plan_file = write(folder, tomli_w.dumps(plan_data).encode(), files)
        plan = load_plan(plan_file)
        findings = run_checks(plan, gate=False, secrets=False)
        elapsed = time.monotonic() - started
        per_group: dict[tuple, int] = {}
        for finding in findings:
            per_group[(finding.id, finding.group_id)] = per_group.get((finding.id, finding.group_id), 0) + 1
        capped = all(count <= 21 for (rule, group), count in per_group.items() if group)
        # Generous: 20,000 members take a few seconds; quadratic work would take minutes.
        if capped and elapsed < MEMBERS / 200 + 30 and any(f.group_id for f in findings):
            held += 1
        else:
            print(label, elapsed, per_group)
    campaign.record("input", f"plans: enormous member lists ({MEMBERS:,} members)", tried=len(cases), held=held)
    assert held == len(cases)


# -- the real CLI on the nastiest ------------------------------------------------------------------


def nastiest() -> dict[str, tuple[bytes, dict[str, bytes]]]:
    plan, files = small_seed()
    good = tomli_w.dumps(plan).encode()
    cases = {
        "arrays nested 100,000 deep": (b"deep = " + b"[" * 100_000 + b"]" * 100_000 + b"\n" + good, files),
        "inline tables nested 5,000 deep": (b"deep = " + b"{a = " * 5_000 + b"1" + b"}" * 5_000 + b"\n" + good, files),
        "invalid UTF-8 in the plan": (good.replace(b"Vega", b"Veg\xff\xfe", 1), files),
        "NUL bytes in the plan": (good.replace(b"Vega", b"V\x00ga", 1), files),
        "port of 10**30 and nan gate_timeout": (good.replace(b"port = 2525", b"port = 1000000000000000000000000000000")
                                               .replace(b'gate = "true"', b'gate = "true"\ngate_timeout = nan'), files),
        "members CSV of invalid UTF-8": (good, {**files, "customers.csv": b"name,email\n\xff\xfe,\xc3\n"}),
        "template that loops for ever": (good, {**files, "announce.md.j2": b"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}),
        "template with an escape and a huge string": (good, {**files, "announce.md.j2": b"{{ ''.__class__ }}{{ 'x' * 10**9 }}"}),
        "members CSV with a line break in a name": (good, {**files, "customers.csv": b'name,email\n"Ada\r\nBcc: e@x.example",ada@acme.example.com\n'}),
    }
    data = base_plan()
    data["stakeholders"][1]["members"] = ["=?utf-8?q?x=0D=0ABcc:_e@x.example?= <noor@vega.example.com>"] * 5_000
    cases["5,000 inline members with encoded line breaks"] = (tomli_w.dumps(data).encode(), files)
    return cases


@pytest.mark.campaign
def test_relcomm_validate_survives_the_nastiest_plans(tmp_path: Path) -> None:
    failures = []
    cases = nastiest()
    for number, (label, (text, files)) in enumerate(cases.items()):
        plan_file = write(tmp_path / f"case{number}", text, files)
        done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "validate", "--no-gate", "--no-secrets",
                               str(plan_file)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        if "Traceback" in done.stderr or done.returncode not in (1, 2) or not (done.stdout + done.stderr).strip():
            failures.append(f"{label}: exit {done.returncode}: {done.stderr[-600:]}")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("case"))
    campaign.record("input", "plans: relcomm validate on the nastiest", tried=len(cases), held=len(cases) - len(failures))
    assert failures == [] and leftovers == []


# -- what the fuzzer found (kept as fixed cases, fast) ---------------------------------------------


@pytest.mark.parametrize("change", [
    pytest.param(lambda d: d["communiques"][0].update(template="x" * 1000), id="template name of 1,000 characters"),
    pytest.param(lambda d: d["stakeholders"][0].update(members="d/" * 3000 + "m.csv"), id="members path of 6,000 characters"),
    pytest.param(lambda d: d["release"].update(notes="x" * 300), id="notes name over 255 bytes"),
])
def test_a_file_name_too_long_is_a_load_error_naming_the_key(tmp_path: Path, change) -> None:
    """Was: OSError ENAMETOOLONG from Path.is_file() while loading, a traceback."""
    data = base_plan()
    change(data)
    plan_file = write(tmp_path, tomli_w.dumps(data).encode(), {k: v.encode() for k, v in FILES.items()})
    with pytest.raises(PlanError) as refused:
        load_plan(plan_file)
    assert "too long" in refused.value.message and refused.value.location.keypath and len(str(refused.value)) < 400


@pytest.mark.parametrize("change", [
    pytest.param(lambda d: d["release"].update({"y" * 200_000: 1}), id="unknown key of 200,000 characters"),
    pytest.param(lambda d: d["communiques"][0].update(channel="e" * 200_000), id="channel of 200,000 characters"),
    pytest.param(lambda d: d["communiques"][0].update(to=["g" * 200_000]), id="group id of 200,000 characters"),
    pytest.param(lambda d: d["communiques"][0].update(reminder_for="r" * 200_000), id="reminder_for of 200,000 characters"),
])
def test_a_huge_value_gets_a_short_message_quickly(tmp_path: Path, change) -> None:
    """Was: minutes in difflib's "did you mean" (quadratic), and the whole value repeated in the message."""
    data = base_plan()
    change(data)
    plan_file = write(tmp_path, tomli_w.dumps(data).encode(), {k: v.encode() for k, v in FILES.items()})
    started = time.monotonic()
    try:
        messages = [f.message + f.hint for f in run_checks(load_plan(plan_file), gate=False, secrets=False)]
    except PlanError as error:
        messages = [str(error)]
    assert time.monotonic() - started < 20
    assert messages and all(len(m) < 2_000 for m in messages)
