"""Issue 13: `relcomm status` lines every column up (whatever the state's label), fits a terminal's
width, and the headless send summary hides nothing (a manual step waiting is counted and said)."""

from __future__ import annotations

import pytest

from relcomm_tui.commands.main import main
from relcomm_tui.app.board import board
from relcomm_tui.commands.status import HEADERS, table_lines
from relcomm_tui.commands.table import cell_width, fit, lines
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.receipts.status import build_status, fate_of
from relcomm_tui.plan import load_plan

from send_helpers import write_plan

MANUAL = '''
[[communiques]]
id = "brief"
to = ["engineering"]
channel = "manual"
instructions = "Tell {{ recipient.name }} in person"
'''


@pytest.fixture
def sent(tmp_path, capsys):
    with LoopbackMailServer(maildir=tmp_path / "server-mail") as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=3, extra_communiques=MANUAL)
        code = main(["send", str(plan_file), "--yes", "--only", "news", "--only", "brief"])
        out = capsys.readouterr().out
        yield plan_file, code, out, server


def test_the_send_summary_counts_the_manual_step_waiting(sent) -> None:
    _, code, out, server = sent
    assert code == 0 and len(server.messages) == 3
    summary = next(line for line in out.splitlines() if line.startswith("Orion 4.2.0: "))
    assert summary.startswith("Orion 4.2.0: 3 accepted, 0 deferred, 0 rejected, 0 in doubt, "
                              "1 manual step(s) waiting for you;"), summary
    assert "1 manual step(s) are yours to do" in out


def test_every_column_starts_where_its_header_does(sent, capsys) -> None:
    plan_file = sent[0]
    assert main(["status", str(plan_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.strip().startswith("recipient"))
    starts = [header.index(name) for name in HEADERS]
    rows = [line for line in out if line.startswith("  ") and not line.strip().startswith(("recipient", "fate:"))]
    assert any("awaiting confirmation" in row for row in rows) and any("accepted" in row for row in rows)
    for row in rows:
        for start in starts[1:]:
            # a cell begins right after two spaces at each header's column, in every row
            assert row[start - 2:start] == "  " and row[start] != " ", (row, start)
    waiting = next(row for row in rows if "awaiting confirmation" in row)
    assert waiting.index("awaiting confirmation") == starts[1]


def test_at_80_columns_nothing_passes_the_edge_and_names_keep_room(sent) -> None:
    plan_file = sent[0]
    plan = load_plan(plan_file)
    ledger = Ledger.open(plan_file.parent / ".relcomm")
    try:
        rows = board(plan, ledger).rows
    finally:
        ledger.close()
    for width in (80, 120):
        out = table_lines(rows, limit=width)
        assert max(cell_width(line) for line in out) <= width
        assert any("awaiting confirmation" in line for line in out)
        # Columns are left out before a name is cut short: at 80 it keeps 32 columns, at 120 all of it.
        assert any(("Customer 2 <customer2@example.c" if width == 80 else "Customer 2 <customer2@example.com>  ")
                   in line for line in out), out
    wide = table_lines(rows, limit=None)
    assert any("250 " in line for line in wide)  # piped: every reply in full


def test_fit_drops_the_least_useful_columns_before_cutting_names() -> None:
    rows = [("recipient", "state", "tries", "reply"), ("Ada Lovelace <ada@example.com>", "awaiting confirmation", "0",
                                                       "x" * 100)]
    widths = fit(rows, limit=60, indent=2, shrink=0, min_shrink=32, drop=(2, 3))
    assert widths[0] == len(rows[1][0]) and widths[2] == 0
    text = lines(rows, widths, indent=2)
    assert all(cell_width(line) <= 60 for line in text)
    assert text[1].startswith("  Ada Lovelace <ada@example.com>  awaiting confirmation")


def test_wide_characters_take_two_columns_and_keep_the_next_column_in_line() -> None:
    rows = [("recipient", "state"), ("山田 太郎 <taro@example.jp>", "accepted"), ("Ada <ada@example.com>", "accepted")]
    widths = fit(rows, limit=None)
    out = lines(rows, widths)
    assert cell_width("山田") == 4
    starts = {cell_width(line[: line.index("accepted")]) for line in out[1:]}
    assert starts == {cell_width(out[0][: out[0].index("state")])}
