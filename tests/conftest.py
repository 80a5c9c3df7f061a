"""Shared pytest hooks: deterministic by default (fixed seeds, Hypothesis derandomized), parser
crashes fail tests, and the hardening campaign's figures are printed at the end of a run."""

from __future__ import annotations

import contextlib
import os
import tempfile

import campaign
import pytest
from hypothesis import settings

# Hypothesis: the same examples every run (a failure replays), no example database written into
# the checkout, and no per-example deadline (a wall-clock threshold that fails on a loaded machine).
# HYPOTHESIS_PROFILE=explore draws fresh examples; tests that set their own settings keep them.
settings.register_profile("relcomm", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "relcomm")
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a long campaign test (still run in CI)")
    config.addinivalue_line("markers", "campaign: part of the hardening campaign that bench/faults.py runs")
    # Under pytest-xdist each worker is a process of its own: they append their figures to one file
    # (the workers inherit this variable), which the main process reads for the table at the end.
    if not hasattr(config, "workerinput") and not os.environ.get("RELCOMM_CAMPAIGN_OUT"):
        out = tempfile.NamedTemporaryFile(prefix="relcomm-campaign-", suffix=".jsonl", delete=False)
        out.close()
        os.environ["RELCOMM_CAMPAIGN_OUT"] = config._relcomm_campaign_out = out.name


def pytest_unconfigure(config) -> None:
    out = getattr(config, "_relcomm_campaign_out", None)
    if out:
        os.environ.pop("RELCOMM_CAMPAIGN_OUT", None)
        with contextlib.suppress(OSError):
            os.unlink(out)


def pytest_report_header(config) -> str:
    return (f"seeds: RELCOMM_TEST_SEED={os.environ.get('RELCOMM_TEST_SEED') or campaign.DEFAULT_SEED} "
            f"(fixed default unless set), hypothesis profile {HYPOTHESIS_PROFILE}")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    tallies = campaign.read(os.environ.get("RELCOMM_CAMPAIGN_OUT")) or campaign.TALLIES
    if tallies:
        terminalreporter.section("hardening campaign")
        terminalreporter.write_line(campaign.table(tallies))


@pytest.fixture(autouse=True)
def isolated_consent(tmp_path_factory, monkeypatch):
    """Each test starts with no command granted and its own settings folder (consent records live there)."""
    from relcomm_tui.plan import consent

    monkeypatch.setenv("RELCOMM_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    consent._granted.clear()
    yield
    consent._granted.clear()


@pytest.fixture(autouse=True)
def strict_report_parsing(monkeypatch):
    """The report parser degrades gracefully for users (a crash becomes an "unparseable message"
    report); in every test a crash is raised instead, so it fails the test that met it. Tests of
    the user-facing degradation set RELCOMM_PARSE_STRICT=0 themselves."""
    from relcomm_tui.receipts import parse

    monkeypatch.setenv(parse.STRICT_ENV, "1")
