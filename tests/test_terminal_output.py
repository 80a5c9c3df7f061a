"""Issue 10, item 12: nothing from a plan, a server or a report reaches the terminal as a control
character. A hostile plan (release name, group names, subjects, bodies, instructions, one group
name with a line break and a forged line after it) is sent for real - a webhook receiver answers
with terminal escapes, an SMTP server refuses a recipient with them - and then every command's
output (validate, send, status, receipts, report; text and --json; through `relcomm`'s entry point
and through each command's run() alone, so both the explicit `visible()` calls and the safety net
are proven), every file the report writes, and every screen of the app are searched for raw
control characters: ESC (OSC title, CSI clear, SGR colour, OSC 8 hyperlink), BEL, BS, CR, the C1
CSI (U+009B), bidi overrides and zero-width characters. And `status --json` / `receipts --json`
answer a plan that cannot be loaded with validate's JSON error object, not silence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import campaign
from relcomm_tui.commands import main as cli
from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.common.terminal_text import visible, visible_lines
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.preview import PreviewScreen
from relcomm_tui.tui.screens.receipts import ReceiptsScreen
from relcomm_tui.tui.screens.send import SendScreen
from http_receiver import Reply, ScriptedReceiver
from tui_helpers import settle, user_config  # noqa: F401  (a fixture)

# What a terminal acts on: set the window title, clear the screen, colour, a hyperlink, the
# 8-bit CSI, reverse the text, hide a character, return to the line's start, back up a cell.
HOSTILE = ("\x1b]0;pwned\x07\x1b[2J\x1b[31m\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
           "\x9b1m\u202etxt.exe\u200b\u2066\r\x08\x7f")
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
FORGED = "FORGED LINE"


def toml(text: str) -> str:
    """`text` as a TOML basic string, every non-printable character escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char not in "\u2066":
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def hostile_plan(folder: Path, smtp_port: int, hooks: ScriptedReceiver) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "receipts" / "new").mkdir(parents=True)
    (folder / "plan.toml").write_text(f"""format = 1
[release]
name = {toml("Orion" + HOSTILE)}
version = "4.2.0"

[sender]
from = "Release Engineering <release@example.com>"
receipts_to = "receipts@example.com"

[transport.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
max_attempts = 1
timeout = 5

[receipts]
sources = [{{ maildir = "receipts" }}]

[[stakeholders]]
id = "eng"
name = {toml("Engineering" + HOSTILE + chr(10) + FORGED)}
members = ["Eng list <eng@example.com>"]

[[stakeholders]]
id = "customers"
name = {toml("Customers" + HOSTILE)}
members = ["Alice <alice@example.com>", "Bob <bob@example.com>"]

[[stakeholders]]
id = "ops"
name = {toml("Ops" + HOSTILE)}
members = [{{ name = "Dana", phone = "+1 555 0100" }}]

[[communiques]]
id = "chat"
to = ["eng"]
channel = "webhook"
url = "{hooks.url('/hook-ok')}"
subject = {toml("News" + HOSTILE)}
body = {toml("Hello" + HOSTILE)}

[[communiques]]
id = "chat-down"
to = ["eng"]
channel = "webhook"
url = "{hooks.url('/hook-500')}"
body = "x"

[[communiques]]
id = "news"
to = ["customers"]
channel = "email"
subject = "Orion 4.2.0 is out"
body = {toml("Hello {{ recipient.name }}" + HOSTILE)}

[[communiques]]
id = "call"
to = ["ops"]
channel = "manual"
instructions = {toml("Call Dana" + HOSTILE)}
""", encoding="utf-8")
    return folder / "plan.toml"


class Outputs:
    """Every output checked, and those holding a raw control character or a forged line."""

    def __init__(self) -> None:
        self.checked: list[str] = []
        self.dirty: list[str] = []

    def look(self, label: str, text: str) -> None:
        self.checked.append(label)
        found = sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})
        if found:
            self.dirty.append(f"{label}: {', '.join(found)}")
        if any(line.lstrip().startswith(FORGED) for line in text.splitlines()):
            self.dirty.append(f"{label}: a line break inside a name started a line of its own")


def run_command(outputs: Outputs, capsys, argv: list[str], *, through_main: bool) -> tuple[int, str, str]:
    if through_main:
        code = cli.main(argv)
    else:  # the command alone: its explicit visible() calls, without the entry point's safety net
        args = cli.parse_args(argv)
        code = cli._module(args.command).run(args)
    out, err = capsys.readouterr()
    how = "relcomm" if through_main else "run()"
    outputs.look(f"{how} {' '.join(a if '/' not in a else Path(a).name for a in argv)}: stdout", out)
    outputs.look(f"{how} {' '.join(a if '/' not in a else Path(a).name for a in argv)}: stderr", err)
    return code, out, err


@pytest.fixture
def servers(tmp_path: Path):
    with FaultyMailServer(maildir=tmp_path / "server-mail") as smtp, ScriptedReceiver() as hooks:
        smtp.faults["bob@example.com"] = PermFail(msg="5.1.1 \x1b]0;pwned\x07 unknown \x1b[2J\x1b[5m user")
        hooks.answer("/hook-ok", Reply(200, "ok " + HOSTILE))
        hooks.answer("/hook-500", Reply(500, "down " + HOSTILE))
        yield smtp, hooks


@pytest.mark.campaign
def test_a_hostile_plan_and_hostile_servers_never_put_a_control_character_on_the_terminal(
        tmp_path: Path, servers, capsys, user_config):
    smtp, hooks = servers
    plan = hostile_plan(tmp_path / "plan", smtp.port, hooks)
    report_file = tmp_path / "hostile-report.eml"
    report_file.write_bytes(b"From: MAILER-DAEMON@example.com\r\nTo: receipts@example.com\r\nSubject: Undelivered "
                            b"\x1b]0;pwned\x07\r\nContent-Type: text/plain\r\n\r\n550 \x1b[2J user unknown\r\n")
    outputs = Outputs()
    # The send itself through run() first (its per-delivery lines come only once), then everything both ways.
    sent, out, err = run_command(outputs, capsys, ["send", str(plan), "--yes"], through_main=False)
    assert sent == 1, (out, err)  # Bob refused, chat-down deferred: exit 1, every delivery tried
    assert len(smtp.messages) == 1 and len(hooks.requests_for("/hook-ok")) == 1
    shown = out + err
    commands = [["validate", str(plan), "--no-gate"], ["validate", str(plan), "--no-gate", "--json"],
                ["send", str(plan), "--yes"], ["status", str(plan)], ["status", str(plan), "--json"],
                ["receipts", str(plan), "--refresh"], ["receipts", str(plan), "--json"],
                ["receipts", "parse", str(report_file)],
                ["report", str(plan)], ["report", str(plan), "--format", "csv"], ["report", str(plan), "--format", "html"]]
    for argv in commands:
        for through_main in (False, True):
            _, out, err = run_command(outputs, capsys, argv, through_main=through_main)
            shown += out + err
            if "--json" in argv:
                json.loads(out)  # still JSON
    for fmt in ("md", "csv", "html"):
        target = tmp_path / f"record.{fmt}"
        run_command(outputs, capsys, ["report", str(plan), "-o", str(target)], through_main=False)
        outputs.look(f"file {target.name}", target.read_text(encoding="utf-8"))
    campaign.record("input", "terminal output: hostile plan and servers, every command",
                    tried=len(outputs.checked), held=len(outputs.checked) - len(outputs.dirty))
    assert len(outputs.checked) > 50
    assert outputs.dirty == [], outputs.dirty
    # the hostile words did arrive and are shown, made visible
    for seen in ("␛]0;pwned␇", "\\u202e", "\\x9b", "␛[2J"):
        assert seen in shown, seen
    assert "Engineering␛" in shown and f"␊{FORGED}" in shown


@pytest.mark.campaign
async def test_a_hostile_plan_and_hostile_servers_never_put_a_control_character_on_a_screen(
        tmp_path: Path, servers, capsys, user_config):
    import asyncio

    smtp, hooks = servers
    plan = hostile_plan(tmp_path / "plan", smtp.port, hooks)
    sent = await asyncio.to_thread(cli.main, ["send", str(plan), "--yes"])  # real replies in the ledger
    assert sent == 1, capsys.readouterr()
    outputs = Outputs()
    app = build_app(plan)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        outputs.look("app: checklist", app.export_screenshot())
        app.push_screen(PreviewScreen("chat"))
        await settle(pilot)
        outputs.look("app: preview of chat", app.export_screenshot())
        await pilot.press("r")  # raw view
        await settle(pilot)
        outputs.look("app: preview of chat, raw", app.export_screenshot())
        app.pop_screen()
        app.push_screen(SendScreen())
        await settle(pilot)
        screen = app.screen
        for _ in range(len(screen.rows)):  # every row's detail pane: replies, instructions
            outputs.look("app: send screen", app.export_screenshot())
            await pilot.press("down")
            await settle(pilot)
        app.notify("reply: " + HOSTILE, title="title " + HOSTILE)
        await settle(pilot)
        outputs.look("app: a notification", app.export_screenshot())
        app.pop_screen()
        app.push_screen(ReceiptsScreen())
        await settle(pilot)
        outputs.look("app: receipts", app.export_screenshot())
        shown = app.export_screenshot()
    assert "pwned" in shown  # the hostile words are on screen, made visible
    campaign.record("input", "terminal output: hostile plan and servers, every screen",
                    tried=len(outputs.checked), held=len(outputs.checked) - len(outputs.dirty))
    assert len(outputs.checked) >= 8
    assert outputs.dirty == [], outputs.dirty


@pytest.mark.parametrize("command", ["status", "receipts"])
def test_json_commands_answer_a_plan_that_cannot_load_with_validates_json_error(tmp_path: Path, capsys, command: str):
    broken = tmp_path / "plan.toml"
    broken.write_text('format = 1\n[release]\nname = "x"\nversion = "1"\nbogus\u001b[2J = 1\n', encoding="utf-8")
    expected_code = cli.main(["validate", str(broken), "--json"])
    expected = json.loads(capsys.readouterr().out)
    code = cli.main([command, str(broken), "--json"])
    out, err = capsys.readouterr()
    answer = json.loads(out)  # printed nothing on stdout before
    assert code == expected_code == 2
    assert answer.keys() == expected.keys() and answer["ok"] is False
    assert answer["load_error"] == expected["load_error"] and answer["load_error"]["message"]
    missing = tmp_path / "nowhere.toml"
    assert cli.main([command, str(missing), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["load_error"]["hint"]


def test_visible_is_the_one_rule():
    assert visible("a\x1bb") == "a␛b" and visible("\x9b") == "\\x9b" and visible("\u202e") == "\\u202e"
    assert visible("tab\there\nline\r") == "tab␉here␊line␍"
    assert visible_lines("tab\there\r\nline") == "tab\there\nline"
    assert visible("café · 日本 · 👍") == "café · 日本 · 👍"  # printable text is untouched
    assert visible(visible(HOSTILE)) == visible(HOSTILE) and not RAW.search(visible(HOSTILE))
    assert visible("\udcff") == "\\udcff" and visible("\U000e0041") == "\\U000e0041"  # undecodable, tag char
    assert visible(None) == "" and visible(42) == "42"
