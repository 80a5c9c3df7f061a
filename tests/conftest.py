"""Shared pytest hooks: print the hardening campaign's figures at the end of a run."""

from __future__ import annotations

import campaign
import pytest


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a long campaign test (still run in CI)")
    config.addinivalue_line("markers", "campaign: part of the hardening campaign that bench/faults.py runs")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if campaign.TALLIES:
        terminalreporter.section("hardening campaign")
        terminalreporter.write_line(campaign.table(campaign.TALLIES))


@pytest.fixture(autouse=True)
def isolated_consent(tmp_path_factory, monkeypatch):
    """Each test starts with no command granted and its own settings folder (consent records live there)."""
    from relcomm_tui.plan import consent

    monkeypatch.setenv("RELCOMM_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    consent._granted.clear()
    yield
    consent._granted.clear()
