"""Shared pytest hooks: print the hardening campaign's figures at the end of a run."""

from __future__ import annotations

import campaign


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a long campaign test (still run in CI)")
    config.addinivalue_line("markers", "campaign: part of the hardening campaign that bench/faults.py runs")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if campaign.TALLIES:
        terminalreporter.section("hardening campaign")
        terminalreporter.write_line(campaign.table(campaign.TALLIES))
