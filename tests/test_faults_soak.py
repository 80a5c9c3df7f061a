"""Soak (issue 6): one long send with 1% random transient faults at the server, then the ledger
and the server must agree: every recipient has exactly one copy, or the ledger reports it
(in doubt: 0 or 1 copy; deferred: 0). Faults (seeded, seed printed): 451 at RCPT, 451 after
the message's text, the connection dropped after the text (with and without the message
stored: in doubt) and instead of answering RCPT (retried). Full size is 100,000 recipients
(bench/faults.py, RELCOMM_CAMPAIGN_SOAK_RECIPIENTS); CI runs a smaller send.
"""

from __future__ import annotations

import collections
import random
import time

import pytest

import campaign
from relcomm_tui.store import ledger as L
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger
from faulty_mailserver import DropConnection, FaultyMailServer, TempFail

from send_helpers import load, simple_render, write_plan

RECIPIENTS = campaign.scale("SOAK_RECIPIENTS", 3000)
SEED = campaign.seed("SOAK_SEED")  # fixed by default; RELCOMM_TEST_SEED or RELCOMM_CAMPAIGN_SOAK_SEED to vary
FAULT_SHARE = 0.01


def fault(chance: random.Random):
    kind = chance.choices(["rcpt 451", "data 451", "drop after text", "drop after text, stored", "drop at rcpt"],
                          weights=(40, 40, 8, 8, 4))[0]
    return kind, {
        "rcpt 451": lambda: TempFail(at="rcpt", times=1),
        "data 451": lambda: TempFail(at="data", times=1),
        "drop after text": lambda: DropConnection(at="data", times=1),
        "drop after text, stored": lambda: DropConnection(at="data", times=1, deliver=True),
        "drop at rcpt": lambda: DropConnection(at="rcpt", times=1),
    }[kind]()


@pytest.mark.campaign
@pytest.mark.slow
async def test_soak_with_one_percent_transient_faults_ledger_and_server_agree(tmp_path):
    chance = random.Random(SEED)
    print(f"\nsoak: seed {SEED} (replay with RELCOMM_CAMPAIGN_SOAK_SEED={SEED}), {RECIPIENTS} recipients")
    server = FaultyMailServer(maildir=None)
    await server.start_async()
    try:
        kinds: collections.Counter = collections.Counter()
        for i in range(RECIPIENTS):
            if chance.random() < FAULT_SHARE:
                kind, rule = fault(chance)
                server.faults[f"customer{i}@example.com"] = rule
                kinds[kind] += 1
        plan = load(write_plan(tmp_path / "plan", server.port, recipients=RECIPIENTS, concurrency=4, max_attempts=4))
        ledger = Ledger.open(plan.state_dir)
        engine = SendEngine(plan, ledger, render=simple_render, backoff_base=0.01, backoff_max=0.2,
                            progress_interval=1.0)
        started = time.monotonic()
        summary = await engine.run()
        elapsed = time.monotonic() - started

        got: collections.Counter = collections.Counter()
        ids: dict[str, set] = collections.defaultdict(set)
        for message in server.messages:
            for rcpt in message.rcpt_tos:
                got[rcpt.lower()] += 1
                ids[rcpt.lower()].add(message.message_id)
        records = ledger.deliveries("4.2.0", "news")
        ledger.close()
    finally:
        await server.stop_async()

    states = collections.Counter(r.state for r in records)
    duplicates = sum(1 for n in got.values() if n > 1)
    problems = []
    for record in records:
        n = got.get(record.recipient_key, 0)
        if n and ids[record.recipient_key] != {record.message_id}:
            problems.append(f"{record.recipient_key}: wrong Message-ID")
        if record.state == L.ACCEPTED and n != 1:
            problems.append(f"{record.recipient_key}: accepted, {n} copies")
        elif record.state == L.IN_DOUBT and n > 1:
            problems.append(f"{record.recipient_key}: in doubt, {n} copies")
        elif record.state not in (L.ACCEPTED, L.IN_DOUBT, L.DEFERRED):
            problems.append(f"{record.recipient_key}: left {record.state_label}")
        elif record.state == L.DEFERRED and n:
            problems.append(f"{record.recipient_key}: deferred, {n} copies")
    losses = RECIPIENTS - len(records) + sum(1 for r in records if r.state == L.ACCEPTED and got.get(r.recipient_key) != 1)
    rate = RECIPIENTS / elapsed
    print(f"soak: {RECIPIENTS} recipients in {elapsed:.1f} s = {rate:.0f} msg/s; faults {dict(kinds)}; "
          f"ledger {dict(states)}; {duplicates} duplicates, {losses} lost")
    tried = sum(kinds.values())
    campaign.record("fault", f"soak: {RECIPIENTS} recipients, 1% transient faults ({rate:.0f} msg/s)", tried=tried,
                    held=tried if not problems else 0, duplicates=duplicates, losses=losses)
    assert not problems, f"seed {SEED}: " + "\n".join(problems[:20])
    assert duplicates == 0 and losses == 0
    # Transient faults are retried within the run; only drops after the text are in doubt.
    assert states[L.IN_DOUBT] <= kinds["drop after text"] + kinds["drop after text, stored"]
    assert states[L.DEFERRED] == 0, "every transient fault fires once and max_attempts is 4"
    assert summary.exit_code == (1 if states[L.IN_DOUBT] else 0)
