"""`relcomm report`: the audit record in Markdown, CSV and HTML after a real send and refresh."""

from __future__ import annotations

import csv
import io

from receipts_helpers import invoke, send_and_report
from relcomm_tui.commands import receipts, report


async def sent_and_refreshed(tmp_path, capsys):
    plan, state = await send_and_report(tmp_path)
    assert invoke(receipts, [str(plan), "--refresh", "--state", str(state)]) == 0
    capsys.readouterr()
    return plan, state


async def test_markdown_record(tmp_path, capsys):
    plan, state = await sent_and_refreshed(tmp_path, capsys)
    assert invoke(report, [str(plan), "--state", str(state)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Orion 4.2.0: release communications record")
    assert "| `news` | 3 | 2 (67%) | 2 (67%) | 1 (33%) | 0 (0%) |" in md
    assert "| **all** | 4 | 3 (75%) | 2 (50%) | 1 (25%) | 0 (0%) |" in md
    assert "## Customers (`customers`)" in md and "## Operations (`operations`)" in md
    bob = next(line for line in md.splitlines() if "bob.unknown@example.com" in line)
    assert "| news | email |" in bob and "bounced: 5.1.1" in bob
    assert "- run 1: send by" in md


async def test_csv_record_one_row_per_delivery(tmp_path, capsys):
    plan, state = await sent_and_refreshed(tmp_path, capsys)
    out = tmp_path / "record.csv"
    assert invoke(report, [str(plan), "-o", str(out), "--state", str(state)]) == 0  # format from the suffix
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 4
    assert list(rows[0])[:9] == ["name", "address", "group", "communique", "channel", "fate", "reason", "sent",
                                 "fate_time"]
    by_address = {r["address"]: r for r in rows}
    bob = by_address["bob.unknown@example.com"]
    assert bob["name"] == "Bob Unknown"
    assert (bob["group"], bob["communique"], bob["channel"], bob["fate"]) == ("customers", "news", "email", "bounced")
    # The relay accepted it; the fate is the bounce, and it is dated by the bounce, not by the send.
    assert bob["send_state"] == "accepted" and "accepted" not in bob["fate"]
    assert bob["reason"].startswith("5.1.1") and bob["bounced"] and not bob["delivered"]
    assert bob["fate_time"] == bob["bounced"] and bob["sent"]
    alice = by_address["alice@example.com"]
    assert (alice["name"], alice["fate"]) == ("Alice Adams", "confirmed") and alice["displayed"] and alice["sent"]
    assert alice["fate_time"] == alice["displayed"] and alice["reason"] == ""
    dave = by_address["dave@example.com"]
    assert (dave["fate"], dave["standing"]) == ("delivered", "reached") and dave["fate_text"].startswith("delivered ")


async def test_html_record_escapes_and_marks_outcomes(tmp_path, capsys):
    plan, state = await sent_and_refreshed(tmp_path, capsys)
    assert invoke(report, [str(plan), "--format", "html", "--state", str(state)]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>")
    assert "Alice Adams &lt;alice@example.com&gt;" in page and "<alice@example.com>" not in page
    assert '<td class="bounced">bounced: 5.1.1' in page


def test_report_before_any_send_says_so(tmp_path, capsys):
    from receipts_helpers import write_plan

    plan = write_plan(tmp_path / "plan", 2525)
    assert invoke(report, [str(plan), "--state", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert "nothing has been sent" in err and "hint:" in err
