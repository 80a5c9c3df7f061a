"""Shared by the SMTP fault campaign (tests/test_faults_smtp.py): a plan and a real send engine
aimed at a loopback server, certificates for the TLS cases, and the bookkeeping that compares
the ledger with what the server actually stored."""

from __future__ import annotations

import ssl
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import campaign
from relcomm_tui.store import ledger as L
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger

from send_helpers import load, open_ledger, simple_render, write_plan

RELEASE = "4.2.0"


def setup(folder: Path, port: int, **options):
    plan = load(write_plan(folder, port, **options))
    return plan, open_ledger(plan.state_dir)


def engine(plan, ledger, events: list | None = None, **options) -> SendEngine:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("render", simple_render)
    return SendEngine(plan, ledger, on_event=(events.append if events is not None else None), **options)


def copies(server) -> Counter:
    """How many copies of a message each recipient got, by address."""
    return Counter(r.lower() for m in server.messages for r in m.rcpt_tos)


@dataclass
class Figures:
    tried: int
    held: int
    duplicates: int
    losses: int
    states: dict[str, str]   # recipient -> ledger state
    copies: Counter          # recipient -> copies the server stored

    def record(self, area: str) -> "Figures":
        campaign.record("fault", f"smtp: {area}", tried=self.tried, held=self.held,
                        duplicates=self.duplicates, losses=self.losses)
        return self


def figures(ledger: Ledger, server, expected: dict[str, set[str]] | set[str], *, communique: str = "news") -> Figures:
    """Each delivery's ledger state against the server's copies.

    A delivery *holds* when its state is one `expected` allows (per recipient, or one set for
    all) and the server agrees with it: accepted = exactly one copy; rejected, deferred or
    queued = none; in doubt = none or one (the ledger says it does not know, truthfully).
    A *duplicate* is any copy past the first; a *loss* is a delivery the ledger calls accepted
    that the server does not have, or one the server has while the ledger says it never went.
    """
    rows = [r for r in ledger.deliveries(RELEASE) if r.communique_id == communique]
    got = copies(server)
    held = losses = 0
    states = {}
    for row in rows:
        key = row.recipient_key.lower()
        states[key] = row.state
        allowed = expected.get(key, {L.ACCEPTED}) if isinstance(expected, dict) else expected
        n = got.get(key, 0)
        agrees = {L.ACCEPTED: n == 1, L.IN_DOUBT: n <= 1}.get(row.state, n == 0)
        if row.state == L.ACCEPTED and n == 0:
            losses += 1
        if row.state in (L.QUEUED, L.DEFERRED, L.REJECTED) and n > 0:
            losses += 1  # the ledger lost track of a message that went out
        if agrees and row.state in allowed:
            held += 1
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    return Figures(len(rows), held, duplicates, losses, states, got)


def assert_figures(f: Figures) -> None:
    assert f.duplicates == 0, f.copies
    assert f.losses == 0, (f.states, f.copies)
    assert f.held == f.tried, (f.states, f.copies)


# -- TLS -------------------------------------------------------------------------------------


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (made with the openssl command)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
