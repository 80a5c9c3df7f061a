"""`relcomm receipts` headless: the table and summaries after a real send, and `receipts parse`."""

from __future__ import annotations

import json

from receipts_helpers import CORPUS, FOREIGN_DSN, add_to_maildir, invoke, send_and_report
from relcomm_tui.commands import receipts


async def test_receipts_refresh_prints_the_table_and_summaries(tmp_path, capsys):
    plan, state = await send_and_report(tmp_path)
    add_to_maildir(plan.parent / "receipts", FOREIGN_DSN)
    assert invoke(receipts, [str(plan), "--refresh", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "refreshed: 7 new message(s) read" in out
    bob = next(line for line in out.splitlines() if "bob.unknown@example.com" in line)
    assert "bounced: 5.1.1" in bob and "User unknown" in bob
    dave = next(line for line in out.splitlines() if "dave@example.com" in line)
    assert "delivered " in dave and dave.rstrip().endswith(dave.split("delivered ")[-1])
    assert "customers: 3 · reached 2 (67%) · confirmed 2 (67%) · bounced 1 (33%) · unknown 0 (0%)" in out
    assert "1 report(s) matched no delivery" in out

    # A second refresh reads nothing new and the numbers stay.
    assert invoke(receipts, [str(plan), "--refresh", "--json", "--state", str(state)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["refresh"]["read"] == 0
    assert data["unmatched_reports"] == 1
    standings = {(r["communique_id"], r["recipient_key"]): r["standing"] for r in data["recipients"]}
    assert standings == {
        ("news", "alice@example.com"): "confirmed", ("news", "bob.unknown@example.com"): "bounced",
        ("news", "carol@example.com"): "confirmed", ("ops-notice", "dave@example.com"): "reached",
    }
    overall = data["overall"]
    assert (overall["total"], overall["reached"], overall["bounced"], overall["reached_pct"]) == (4, 3, 1, 75.0)


async def test_receipts_without_refresh_reads_no_source(tmp_path, capsys):
    plan, state = await send_and_report(tmp_path)
    assert invoke(receipts, [str(plan), "--json", "--state", str(state)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "refresh" not in data
    assert {r["standing"] for r in data["recipients"]} == {"unknown"}


def test_receipts_parse_json_has_the_exact_shape(capsys):
    files = [str(CORPUS / name) for name in ("rfc3464-01.eml", "arf-01.eml", "lhost-postfix-03.eml")]
    assert invoke(receipts, ["parse", *files, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [item["file"] for item in data] == files
    for item in data:
        assert set(item) == {"file", "kind", "recipients", "original_message_id", "envelope_id"}
        for recipient in item["recipients"]:
            assert set(recipient) == {"address", "action", "status", "diagnostic"}
    assert data[0]["kind"] == "dsn"
    assert data[0]["recipients"] == [{"address": "userunknown@bouncehammer.jp", "action": "failed",
                                      "status": "5.1.1",
                                      "diagnostic": "550 5.1.1 <userunknown@bouncehammer.jp>... User Unknown"}]
    assert data[0]["original_message_id"] == "E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org"
    assert data[1]["kind"] == "complaint"
    # A non-standard (Postfix text) bounce is a dsn too, its recipient failed.
    assert data[2]["kind"] == "dsn" and data[2]["recipients"][0]["action"] == "failed"


def test_receipts_parse_text_and_a_missing_file(tmp_path, capsys):
    assert invoke(receipts, ["parse", str(CORPUS / "rfc3464-01.eml"), str(tmp_path / "nope.eml")]) == 1
    captured = capsys.readouterr()
    assert "rfc3464-01.eml: dsn" in captured.out and "userunknown@bouncehammer.jp  failed  5.1.1" in captured.out
    assert "cannot read" in captured.err and "nope.eml" in captured.err and "Traceback" not in captured.err


def test_a_broken_plan_is_one_message(tmp_path, capsys):
    (tmp_path / "plan.toml").write_text("format = 1\n[release]\n", encoding="utf-8")
    assert invoke(receipts, [str(tmp_path / "plan.toml")]) == 2
    assert "the plan cannot be loaded" in capsys.readouterr().err


async def test_watch_prints_changes_until_interrupted(tmp_path):
    import asyncio
    import signal
    import sys

    from receipts_helpers import reply_from
    from relcomm_tui.store.ledger import Ledger

    plan, state = await send_and_report(tmp_path)
    with Ledger.open(state) as ledger:
        dave = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == "dave@example.com")
    # As from a terminal: SIGINT at its default even when the test run was started in the background
    # (which ignores it, and children inherit that); faulthandler so a hang can say where it is.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "faulthandler", "-m", "relcomm_tui.commands.main", "receipts", str(plan), "--watch",
        "--every", "0.2", "--state", str(state), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Generous deadlines: they only bound a failure (this ran 4 workers beside mutation runs, load 7).
    try:
        lines = []
        while not any(line.startswith("overall") for line in lines):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 90)).decode())
        add_to_maildir(plan.parent / "receipts", reply_from("dave@example.com", dave.message_id))
        change = (await asyncio.wait_for(process.stdout.readline(), 90)).decode()
        assert "ops-notice  Dave Ops <dave@example.com>: confirmed" in change
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(process.wait(), 90)
        except TimeoutError:
            process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack on stderr
            await asyncio.wait_for(process.wait(), 30)
            raise AssertionError(f"--watch did not stop on SIGINT; stderr: {(await process.stderr.read())[-4000:]!r}") from None
    assert code == 0
    assert "stopped watching" in (await process.stderr.read()).decode()


async def test_on_an_80_column_terminal_the_table_fits_and_a_bounce_reason_is_whole(tmp_path):
    """Over SSH at 80 columns: every line fits, one block per communique, the bounce's reason whole
    on its own line; piped, the same command keeps its one-row-per-delivery table (scripts grep it)."""
    import os
    import pty
    import subprocess
    import sys

    plan, state = await send_and_report(tmp_path)
    argv = [sys.executable, "-m", "relcomm_tui.commands.main", "receipts", str(plan), "--refresh", "--state", str(state)]
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                               env={**os.environ, "COLUMNS": "80", "LINES": "24"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(30) == 0
    shown = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    too_wide = [line for line in shown if len(line) > 80]
    assert not too_wide, too_wide
    assert "news" in shown and "ops-notice" in shown  # the communiques head their blocks
    start = next(i for i, line in enumerate(shown) if line.startswith("      bounced: 5.1.1"))
    reason = " ".join(line.strip() for line in shown[start:start + 3] if line.startswith("      "))
    assert "<bob.unknown@example.com>: Recipient address rejected: User unknown" in reason  # whole, wrapped

    piped = subprocess.run(argv[:-3] + ["--state", str(state)], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "80"}, timeout=30)
    bob = next(line for line in piped.stdout.splitlines() if "bob.unknown@example.com" in line)
    assert "bounced: 5.1.1" in bob and "User unknown" in bob and bob.startswith("news")
