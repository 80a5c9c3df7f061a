"""Templates that try to take more time or memory than the render budget allows (issue 10, item 6).

Shared by tests/test_template_budget.py (each must end as a `limit` problem, in a process under an
address-space limit) and bench/render_limits.py (prints the time and peak memory of each).
`run_bombs` is what the child process runs: it renders each one and prints one JSON line each.
"""

from __future__ import annotations

import json
import resource
import sys
import time

X10 = "xxxxxxxxxx"
DOUBLINGS = 27  # 2**27 copies of ten characters: 1.3 GB of text, from a template of 600 bytes


def doubling(start: str, step: str, then: str = "{{ a }}", times: int = DOUBLINGS) -> str:
    return f"{{% set a = {start} %}}" + f"{{% set a = {step} %}}" * times + then


def in_namespace(start: str, step: str, then: str = "{{ ns.a }}") -> str:
    return (f"{{% set ns = namespace(a={start}) %}}{{% for i in range({DOUBLINGS}) %}}{{% set ns.a = {step} %}}"
            f"{{% endfor %}}{then}")


BIG = "'x' * 999990"
# (label, template): every one of these must stop at a limit, quickly, in little memory.
BOMBS: list[tuple[str, str]] = [
    ("the issue: list literal doubled 27 times, printed", doubling(f'["{X10}"]', "[a, a]")),
    ("dict literal doubled", doubling(f'{{"k": "{X10}"}}', '{"l": a, "r": a}')),
    ("tuple literal doubled", doubling(f'("{X10}",)', "(a, a)")),
    ("a + a nested", doubling(f'["{X10}"]', "[a] + [a]")),
    ("a + a flat", doubling(f'["{X10}"]', "a + a")),
    ("[a] * 2", doubling(f'["{X10}"]', "[a] * 2")),
    ("2 * [a]", doubling(f'["{X10}"]', "2 * [a]")),
    ("(a,) * 2", doubling(f'("{X10}",)', "(a,) * 2")),
    ("n * 'x'", "{{ 1000000000 * 'x' }}"),
    ("'x' * n", "{{ 'x' * 1000000000 }}"),
    ("n * [a]", "{% set a = ['" + X10 + "'] %}{{ 1000000000 * [a] }}"),
    ("in a namespace, doubled in a loop", in_namespace(f'["{X10}"]', "[ns.a, ns.a]")),
    ("dict() calls doubled", doubling(f'["{X10}"]', "dict(l=a, r=a)")),
    ("namespace() holding itself twice", doubling(f'["{X10}"]', "[namespace(x=a), namespace(x=a)]")),
    ("batch filter nesting", doubling(f'["{X10}"]', "[a, a]|batch(1)|list", times=DOUBLINGS)),
    ("list filter", doubling(f'["{X10}"]', "[a, a]|list")),
    ("map(string)", doubling(f'["{X10}"]', "[a, a]", then="{{ a|map('string')|list }}")),
    ("dictsort", doubling(f'{{"k": "{X10}"}}', '{"l": a, "r": a}', then="{{ a|dictsort }}")),
    ("tojson", doubling(f'["{X10}"]', "[a, a]", then="{{ a|tojson }}")),
    ("tojson with a huge indent on a deep value", doubling("[1]", "[a]", then="{{ a|tojson(indent=900000) }}",
                                                         times=18)),
    ("pprint", doubling(f'["{X10}"]', "[a, a]", then="{{ a|pprint }}")),
    ("string", doubling(f'["{X10}"]', "[a, a]", then="{{ a|string }}")),
    ("join", doubling(f'["{X10}"]', "[a, a]", then="{{ a|join }}")),
    ("~ of a nested value", doubling(f'["{X10}"]', "[a, a]", then="{{ a ~ a }}")),
    ("~ of many big texts", f"{{% set s = {BIG} %}}{{{{ s" + " ~ s" * 1000 + " }}"),
    ("str.format repeating a field", f"{{% set s = {BIG} %}}{{{{ ('{{0}}' * 1000).format(s) }}}}"),
    ("format filter with a mapping", f"{{% set s = {BIG} %}}{{{{ ('%(x)s' * 1000)|format(x=s) }}}}"),
    ("% with a mapping", f"{{% set s = {BIG} %}}{{{{ ('%(x)s' * 1000) % {{'x': s}} }}}}"),
    ("% widths adding up", "{{ ('%999999s' * 1000) % ((1,) * 1000) }}"),
    ("% of a nested value", doubling(f'["{X10}"]', "[a, a]", then="{{ '%s' % [a] }}")),
    ("format of a nested value", doubling(f'["{X10}"]', "[a, a]", then="{{ '{}'.format(a) }}")),
    ("dict views in a list", f"{{% set d = {{'k': {BIG}}} %}}{{{{ [d.items(), d.items()] }}}}"),
    ("a namespace grown after it was counted",
     f"{{% set ns = namespace(x=1) %}}{{% set l = [ns] * 20000 %}}{{% set ns.x = {BIG} %}}{{{{ l }}}}"),
    ("many big values kept at once", f"{{% set s = {BIG} %}}" + "".join(
        f"{{% set a{i} = s ~ '{i}' %}}" for i in range(200)) + "done"),
    ("many big slices kept at once", f"{{% set s = {BIG} %}}" + "".join(
        f"{{% set a{i} = s[{i}:] %}}" for i in range(200)) + "done"),
    ("many lists of short texts kept at once", "".join(
        f"{{% set l{i} = range(100000)|map('string')|list %}}" for i in range(40)) + "done"),
    ("many texts of 4-byte characters kept at once", "{% set s = '\U0001F600' * 999990 %}" + "".join(
        f"{{% set a{i} = s ~ '{i}' %}}" for i in range(40)) + "done"),
    ("big values held by a deep macro recursion",
     "{% macro m(n, s) %}{% set t = s ~ n %}{% if n %}{{ m(n - 1, t) }}{% endif %}{% endmacro %}"
     "{{ m(45, 'x' * 900000) }}"),
    ("translate expanding every character", "{{ ('x' * 100000).translate({120: 'y' * 1000}) }}"),
    ("sum of lists", "{{ ([[1]] * 100000)|sum(start=[])|length }}"),
    ("generator consumed into a list", "{{ range(100000)|map('center', 999999)|list|length }}"),
    ("a template too long to compile", "{{ a }}" * 100000),
    ("a template with too many tags to compile", "{% if a %}x{% endif %}" * 6000),
    ("cycler holding a big list", f"{{% set l = [{BIG}] %}}" + "".join(
        f"{{% set c{i} = cycler(*(l * 1)) %}}" for i in range(10)) + "{{ [c0, c1, c2] }}"),
]


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux ru_maxrss carries over the
    peak of the process that started this one (pytest, hundreds of MB late in a run) across exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bombs(labels: list[str] | None = None, address_space_mb: int = 0) -> None:
    """Render each bomb in this process; print one JSON line per bomb (kind, message, seconds, peak MB)."""
    from relcomm_tui.compose.templates import Namespace, Source, TemplateProblem, render_source

    if address_space_mb:
        # On top of what the interpreter already maps: a render that tried to hold gigabytes fails here.
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
        limit = mapped + address_space_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    context = {"recipient": Namespace("recipient", {"name": "Ada"}, "Ada"), "notes": "- faster"}
    base = peak_mb()
    for label, template in BOMBS:
        if labels and label not in labels:
            continue
        started = time.monotonic()
        try:
            render_source(Source(template, "t.md.j2"), context)
            kind, message = "rendered", ""
        except TemplateProblem as problem:
            kind, message = problem.kind, problem.message
        except MemoryError:
            kind, message = "memory", "MemoryError outside the renderer"
        print(json.dumps({"label": label, "kind": kind, "message": message,
                          "seconds": round(time.monotonic() - started, 3),
                          "peak_mb": round(peak_mb(), 1), "base_mb": round(base, 1)}),
              flush=True)


if __name__ == "__main__":
    run_bombs(sys.argv[2:] or None, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
