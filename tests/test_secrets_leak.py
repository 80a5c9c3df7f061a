"""Hardening campaign (issue 6), secrets: a known, distinctive SMTP password goes in through each
route - { env = ... }, { command = ... }, { keyring = ... } (an in-memory backend: no OS keyring
runs here) and `relcomm send --password-stdin` (in the app: typed into the password dialog) -
and must come out nowhere but on the SMTP connection:

- in no file relcomm writes: the whole folder the test runs in (plan folders with their state
  dirs: ledger.sqlite and -wal/-shm, lock, dry-run outbox, reports; the user config folder with
  the consent records; HOME and XDG folders), searched for the password in clear and in base64
  (as AUTH PLAIN / AUTH LOGIN encode it, at any alignment);
- in no stdout/stderr of any command, including when the server refuses the password and when the
  password command fails after printing the password on stderr;
- in no exported screen of the app (checklist and send screens, the password dialog).

And the state dir is 0700, every file relcomm creates in it 0600.
"""

from __future__ import annotations

import base64
import html
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import campaign
import keyring
import pytest
from textual.widgets import Input

from memory_keyring import MemoryKeyring
from relcomm_tui.plan import consent
from faulty_mailserver import FaultyMailServer
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.dialogs.password import PasswordDialog
from relcomm_tui.tui.screens.send import SendScreen
from tui_helpers import settle

TESTS = Path(__file__).resolve().parent
PASSWORD = "Zq7~relcomm-LEAKCHECK-4f9e2b!K"
USER = "release-bot"
ENV_VAR = "RELCOMM_LEAKTEST_SMTP_PASSWORD"
KEYRING_NAME = f"relcomm-leaktest:{USER}"
ROUTES = ("env", "command", "keyring", "stdin")


# --------------------------------------------------------------------------- what a leak looks like


def _base64_cores(secret: bytes) -> list[bytes]:
    """base64 of the secret as it appears inside any longer base64 text: for each of the three
    alignments, the characters that depend on the secret alone."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        start = 4 if shift else 0
        cores.append(encoded[start:len(encoded) - 4])
    return cores


NEEDLES = {
    "clear": PASSWORD.encode(),
    "AUTH PLAIN": base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
    "AUTH LOGIN": base64.b64encode(PASSWORD.encode()),
    "utf-16": PASSWORD.encode("utf-16-le"),
    "html-escaped": html.escape(PASSWORD).encode(),
    **{f"base64 at offset {i}": core for i, core in enumerate(_base64_cores(PASSWORD.encode()))},
}


def leaked(data: bytes | str, needles: dict[str, bytes] = NEEDLES) -> list[str]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return [name for name, needle in needles.items() if needle in data]


@dataclass
class Places:
    """Every place checked for the password, and those that held it."""

    checked: list[str] = field(default_factory=list)
    leaking: list[str] = field(default_factory=list)
    needles: dict[str, bytes] = field(default_factory=lambda: NEEDLES)  # other secrets: see test_secrets_leak_channels

    def look(self, label: str, data: bytes | str) -> None:
        self.checked.append(label)
        found = leaked(data, self.needles)
        if found:
            self.leaking.append(f"{label} ({', '.join(found)})")

    def tree(self, root: Path, *, skip: tuple[Path, ...] = ()) -> None:
        for path in sorted(root.rglob("*")):
            if any(path == s or s in path.parents for s in skip) or not path.is_file() or path.is_symlink():
                continue
            self.look(f"file {path.relative_to(root)}", path.read_bytes())

    def record(self, route: str) -> None:
        campaign.record("secret", f"secrets: {route}", tried=len(self.checked),
                        held=len(self.checked) - len(self.leaking), leaks=len(self.leaking))
        assert self.checked
        assert self.leaking == [], self.leaking


# --------------------------------------------------------------------------- a plan per route


def reference(route: str, vault: Path, *, failing: bool = False) -> str:
    if route == "env":
        return f'password = {{ env = "{ENV_VAR}" }}'
    if route == "keyring":
        return f'password = {{ keyring = "{KEYRING_NAME}" }}'
    if route == "command":
        if failing:  # a broken password helper that prints the secret on stderr and fails
            return f"password = {{ command = \"sh -c 'cat {vault / 'smtp-password'} >&2; exit 3'\" }}"
        return f'password = {{ command = "cat {vault / "smtp-password"}" }}'
    return ""  # stdin: the plan names no reference


def write_plan(folder: Path, port: int, route: str, vault: Path, *, failing: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""format = 1
[release]
name = "Orion"
version = "4.2.0"

[sender]
from = "Release Engineering <release@orion.example.com>"
receipts_to = "receipts@orion.example.com"

[transport.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
concurrency = 2
timeout = 5
username = "{USER}"
{reference(route, vault, failing=failing)}

[receipts]
sources = [{{ maildir = "receipts" }}]
dsn = true

[[stakeholders]]
id = "customers"
name = "Customers"
members = ["Alice Adams <alice@example.com>", "Bob Unknown <bob.unknown@example.com>", "Carol <carol@example.com>"]

[[communiques]]
id = "news"
to = ["customers"]
channel = "email"
subject = "Orion 4.2.0 is out"
body = "Hello {{{{ recipient.name }}}}"
"""
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    return folder / "plan.toml"


@dataclass
class World:
    root: Path
    vault: Path  # the user's own secret store (password file, keyring contents): not relcomm's to write
    env: dict[str, str]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "world"
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "smtp-password").write_text(PASSWORD + "\n", encoding="utf-8")
    service, _, user = KEYRING_NAME.partition(":")
    (vault / "keyring.json").write_text(json.dumps({service: {user: PASSWORD}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELCOMM_", "XDG_", "PYTHON"))}
    home = root / "home"
    for name, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "home/.config"), ("XDG_STATE_HOME", "home/.local/state"),
                      ("XDG_CACHE_HOME", "home/.cache"), ("XDG_DATA_HOME", "home/.local/share"),
                      ("RELCOMM_CONFIG_DIR", "config")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / sub)
        monkeypatch.setenv(name, str(root / sub))
    env.update(PYTHONPATH=str(TESTS), PYTHON_KEYRING_BACKEND="memory_keyring.MemoryKeyring",
               RELCOMM_TEST_KEYRING_FILE=str(vault / "keyring.json"), COLUMNS="200", TERM="dumb")
    assert home.is_dir()
    return World(root, vault, env)


def relcomm(world: World, places: Places, route: str, *args: str, stdin: str | None = None,
            expect: int | None = 0) -> subprocess.CompletedProcess:
    """Run `relcomm ARGS` as a user would; its stdout and stderr are places checked."""
    env = dict(world.env)
    if route == "env":
        env[ENV_VAR] = PASSWORD
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=world.root)
    label = " ".join(a if "/" not in a else Path(a).name for a in args)
    places.look(f"stdout of relcomm {label}", done.stdout)
    places.look(f"stderr of relcomm {label}", done.stderr)
    if expect is not None:
        assert done.returncode == expect, (args, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done


def send_args(route: str, plan: Path, *more: str) -> tuple[list[str], str | None]:
    if route == "stdin":
        return ["send", str(plan), *more, "--password-stdin"], PASSWORD + "\n"
    return ["send", str(plan), *more], None


def private(root: Path) -> tuple[list[str], list[str]]:
    """(everything checked, what is open to group/others) in a state dir."""
    checked, open_ = [root.name], []
    if stat.S_IMODE(root.stat().st_mode) != 0o700:
        open_.append(f"{root.name} {oct(stat.S_IMODE(root.stat().st_mode))}")
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        checked.append(str(path.relative_to(root)))
        if mode & 0o077:
            open_.append(f"{path.relative_to(root)} {oct(mode)}")
    return checked, open_


# --------------------------------------------------------------------------- headless


@pytest.mark.campaign
@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_headless_commands_never_show_or_write_the_password(route: str, world: World):
    places = Places()
    good_dir, refused_dir = world.root / "plan-good", world.root / "plan-refused"
    with FaultyMailServer(maildir=world.root / "server-mail", auth=(USER, PASSWORD),
                            write_reports_to=good_dir / "receipts", report_delay=(0.0, 0.0)) as server, \
            FaultyMailServer(maildir=world.root / "refusing-mail", auth=(USER, "not-" + PASSWORD)) as refusing:
        good = write_plan(good_dir, server.port, route, world.vault)
        refused = write_plan(refused_dir, refusing.port, route, world.vault)
        if route == "command":
            relcomm(world, places, route, "allow", "--yes", str(good))  # recorded under RELCOMM_CONFIG_DIR
        if route != "stdin":
            relcomm(world, places, route, "validate", str(good), expect=None)
        args, stdin = send_args(route, good, "--dry-run")
        relcomm(world, places, route, *args, stdin=stdin)
        args, stdin = send_args(route, good, "--yes")
        relcomm(world, places, route, *args, stdin=stdin, expect=None)  # Bob bounces later: 0 or 1
        assert server.messages_accepted == 3
        assert server.commands_named("AUTH"), "the password was used on the SMTP connection"
        server.flush_reports()
        relcomm(world, places, route, "receipts", str(good), "--refresh")
        relcomm(world, places, route, "status", str(good), expect=None)
        for fmt in ("md", "html", "csv"):
            relcomm(world, places, route, "report", str(good), "-o", str(world.root / f"report.{fmt}"))
        relcomm(world, places, route, "report", str(good), "--format", "csv")

        # the server refuses the password: one clear message, nothing sent, the password nowhere
        more = ("--yes", "--allow-commands") if route == "command" else ("--yes",)
        args, stdin = send_args(route, refused, *more)
        done = relcomm(world, places, route, *args, stdin=stdin, expect=2)
        assert "auth" in done.stderr.lower() or "password" in done.stderr.lower(), done.stderr
        assert refusing.messages_accepted == 0

    # every file anywhere in the test's world (plans, state dirs, reports, config, HOME, XDG, server mail)
    places.tree(world.root)
    names = " ".join(places.checked)
    for written in ("ledger.sqlite", ".relcomm/outbox/new/", "report.md", "report.html", "report.csv",
                    "stdout of relcomm send", "stderr of relcomm send"):
        assert written in names, written
    if route == "command":
        assert "config/allowed/" in names  # the consent record
    places.record(route)

    checked, open_ = [], []
    for state in (good_dir / ".relcomm", refused_dir / ".relcomm"):
        assert state.is_dir(), state
        c, o = private(state)
        checked += c
        open_ += o
    campaign.record("secret", f"state dir private (0700/0600): {route}", tried=len(checked),
                    held=len(checked) - len(open_), leaks=len(open_))
    assert any(name.endswith("ledger.sqlite") for name in checked)
    assert open_ == []


@pytest.mark.campaign
def test_a_failing_password_command_that_prints_the_password_is_never_echoed(world: World):
    places = Places()
    with FaultyMailServer(maildir=world.root / "server-mail", auth=(USER, PASSWORD)) as server:
        plan = write_plan(world.root / "plan-failing", server.port, "command", world.vault, failing=True)
        validated = relcomm(world, places, "command", "validate", str(plan), "--allow-commands", expect=None)
        assert "failed (exit 3)" in validated.stdout + validated.stderr
        done = relcomm(world, places, "command", "send", str(plan), "--yes", "--allow-commands", expect=2)
        assert "password" in done.stderr
        assert server.messages_accepted == 0
    places.tree(world.root)
    places.record("command that fails after printing to stderr")


# --------------------------------------------------------------------------- the app


async def _app_run(plan: Path, state: Path, places: Places, label: str, *, typed: bool) -> tuple[list[str], list[str]]:
    """Check the app's screens, and its state dir while the ledger is open (-wal, -shm, lock).
    Returns what `private` found in the state dir."""
    app = build_app(plan, state_dir=state, allow_commands=True)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot)
        places.look(f"{label}: checklist screen", app.export_screenshot())
        app.push_screen(SendScreen(start=True))
        await settle(pilot)
        if typed or isinstance(app.screen, PasswordDialog):
            dialog = app.screen
            assert isinstance(dialog, PasswordDialog), type(dialog).__name__
            places.look(f"{label}: password dialog", app.export_screenshot())
            if typed:
                field_ = dialog.query_one(Input)
                assert field_.password  # masked
                await pilot.press(*PASSWORD)
                places.look(f"{label}: password dialog, typed", app.export_screenshot())
                await pilot.press("enter")
                await settle(pilot)
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        places.look(f"{label}: send screen", app.export_screenshot())
        if isinstance(app.screen, PasswordDialog):  # asked again after a refusal
            await pilot.press("escape")
            await settle(pilot)
            places.look(f"{label}: after the dialog", app.export_screenshot())
        # while the app holds the ledger: its WAL and shared-memory files exist
        for path in sorted(state.rglob("*")):
            if path.is_file():
                places.look(f"{label}: open state file {path.relative_to(state)}", path.read_bytes())
        return private(state)


@pytest.mark.campaign
@pytest.mark.parametrize("route", ROUTES)
async def test_the_app_never_shows_the_password(route: str, world: World, monkeypatch: pytest.MonkeyPatch):
    places = Places()
    if route == "env":
        monkeypatch.setenv(ENV_VAR, PASSWORD)
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring({tuple(KEYRING_NAME.split(":", 1)): PASSWORD}))
    try:
        with FaultyMailServer(maildir=world.root / "server-mail", auth=(USER, PASSWORD)) as server, \
                FaultyMailServer(maildir=world.root / "refusing-mail", auth=(USER, "not-" + PASSWORD)) as refusing:
            good = write_plan(world.root / "plan-good", server.port, route, world.vault)
            refused = write_plan(world.root / "plan-refused", refusing.port, route, world.vault)
            consent.grant(load_plan(good))
            consent.grant(load_plan(refused))
            checked, open_ = await _app_run(good, world.root / "state-good", places, "accepted",
                                            typed=route == "stdin")
            assert server.messages_accepted == 3
            assert any(name.endswith("-wal") for name in checked), checked
            more = await _app_run(refused, world.root / "state-refused", places, "refused", typed=route == "stdin")
            checked, open_ = checked + more[0], open_ + more[1]
            assert refusing.messages_accepted == 0
            if route == "command":
                failing = write_plan(world.root / "plan-failing", server.port, route, world.vault, failing=True)
                consent.grant(load_plan(failing))
                await _app_run(failing, world.root / "state-failing", places, "failing command", typed=False)
    finally:
        keyring.set_keyring(previous)
    places.tree(world.root)
    assert sum("screen" in place or "dialog" in place for place in places.checked) >= 4
    places.record(f"{route} (app)")
    campaign.record("secret", f"state dir private while open (0700/0600): {route} (app)", tried=len(checked),
                    held=len(checked) - len(open_), leaks=len(open_))
    assert open_ == [], open_


# --------------------------------------------------------------------------- servers that echo (issue 10, item 8)
#
# A server that repeats the client's AUTH exchange in its words - in a refused login (535/454), in a
# 4xx/5xx at MAIL, RCPT or the end of DATA, in a later connection's greeting or EHLO, or in a line
# that is not SMTP at all - and repeats it as sent, decoded, cut short, split over a multi-line
# reply, upper-cased or URL-quoted. Its words reach stderr, the ledger (outcome and run), status,
# receipts, the report and the app's send screen: the password must reach none of them, not even
# a piece of it.

from echo_smtp import EchoSmtpServer  # noqa: E402
from relcomm_tui.commands.main import main as relcomm_main  # noqa: E402

ECHOES = [  # (stage, code, form, AUTH methods offered)
    ("auth", 535, "line", "PLAIN LOGIN"),
    ("auth", 535, "line", "LOGIN"),
    ("auth", 535, "decoded", "PLAIN LOGIN"),
    ("auth", 535, "truncated", "PLAIN LOGIN"),
    ("auth", 454, "split", "PLAIN LOGIN"),
    ("auth", 535, "upper", "LOGIN"),
    ("auth", 535, "quoted", "PLAIN LOGIN"),
    ("mail", 451, "line", "PLAIN LOGIN"),
    ("mail", 553, "decoded", "LOGIN"),
    ("rcpt", 450, "split", "PLAIN LOGIN"),
    ("rcpt", 550, "line", "LOGIN"),
    ("data", 452, "truncated", "PLAIN LOGIN"),
    ("data", 554, "line", "PLAIN LOGIN"),
    ("data", 250, "decoded", "PLAIN LOGIN"),  # accepted, and the echo kept as the delivery's receipt
    ("greeting", 421, "line", "PLAIN LOGIN"),
    ("greeting", 554, "quoted", "LOGIN"),
    ("ehlo", 550, "line", "PLAIN LOGIN"),
    ("garbage", 0, "decoded", "PLAIN LOGIN"),
]


def _pieces(name: str, text: bytes, width: int = 10) -> dict[str, bytes]:
    return {f"{name} piece {i}": text[i:i + width] for i in range(len(text) - width + 1)}


# A piece of the password is a leak too: any 10 characters of it, in clear or in any base64 alignment
# (as sent, or upper-cased by the server).
ECHO_NEEDLES = dict(NEEDLES)
ECHO_NEEDLES |= _pieces("clear", PASSWORD.encode())
for _i, _core in enumerate(_base64_cores(PASSWORD.encode())):
    ECHO_NEEDLES |= _pieces(f"base64 at offset {_i}", _core) | _pieces(f"BASE64 at offset {_i}", _core.upper())


def _echo_plan(folder: Path, port: int, world: World) -> Path:
    plan = write_plan(folder, port, "env", world.vault)
    plan.write_text(plan.read_text().replace("timeout = 5\n", "timeout = 5\nmax_attempts = 1\n"), encoding="utf-8")
    return plan


def _run_in_process(places: Places, label: str, capsys, *args: str) -> tuple[int, str, str]:
    code = relcomm_main(list(args))
    out, err = capsys.readouterr()
    places.look(f"{label}: stdout of relcomm {args[0]}", out)
    places.look(f"{label}: stderr of relcomm {args[0]}", err)
    return code, out, err


@pytest.mark.campaign
@pytest.mark.parametrize("stage, code, form, methods", ECHOES, ids=[f"{s}-{c}-{f}-{m.split()[0]}" for s, c, f, m in ECHOES])
def test_a_server_that_echoes_the_auth_exchange_never_gets_the_password_shown_or_kept(
        stage: str, code: int, form: str, methods: str, world: World, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv(ENV_VAR, PASSWORD)
    places = Places(needles=ECHO_NEEDLES)
    label = f"{stage} {code} {form}"
    folder = world.root / "plan-echo"
    with EchoSmtpServer(echo_at=stage, code=code, form=form, methods=methods) as server:
        plan = _echo_plan(folder, server.port, world)
        sent, out, err = _run_in_process(places, label, capsys, "send", str(plan), "--yes")
        assert server.auth_lines, "the client logged in, so there was something to echo"
        echoed = server.echo()
        assert leaked(echoed, ECHO_NEEDLES), f"the server's echo holds the password: {echoed!r}"
        shown = out + err
        for args in (("status", str(plan)), ("status", str(plan), "--json"), ("receipts", str(plan)),
                     ("report", str(plan)), ("report", str(plan), "--format", "csv"),
                     ("report", str(plan), "-o", str(world.root / "report.html"))):
            _code, more_out, more_err = _run_in_process(places, label, capsys, *args)
            shown += more_out + more_err
    # the echo reached relcomm's words (hidden), so the check above looked at something real
    assert "(secret)" in shown, shown[-3000:]
    assert sent in ((0,) if code == 250 else (1, 2)), (sent, shown[-2000:])
    places.tree(world.root)
    assert any("ledger.sqlite" in place for place in places.checked)
    places.record(f"SMTP server echoing AUTH: {label} ({methods.split()[0]})")


@pytest.mark.campaign
@pytest.mark.parametrize("stage, code, form", [("auth", 535, "line"), ("rcpt", 550, "split"), ("greeting", 421, "line")])
def test_relcomm_send_as_a_process_never_prints_an_echoed_password(stage: str, code: int, form: str, world: World):
    places = Places(needles=ECHO_NEEDLES)
    with EchoSmtpServer(echo_at=stage, code=code, form=form) as server:
        plan = _echo_plan(world.root / "plan-echo", server.port, world)
        done = relcomm(world, places, "env", "send", str(plan), "--yes", expect=None)
        assert done.returncode in (1, 2) and "(secret)" in done.stdout + done.stderr, (done.stdout, done.stderr)
        relcomm(world, places, "env", "status", str(plan))
        relcomm(world, places, "env", "report", str(plan), "-o", str(world.root / "report.md"))
    places.tree(world.root)
    places.record(f"SMTP server echoing AUTH: {stage} {code} {form} (relcomm send process)")


@pytest.mark.campaign
@pytest.mark.parametrize("stage, code", [("auth", 535), ("rcpt", 550), ("greeting", 421)])
async def test_the_app_never_shows_an_echoed_password(stage: str, code: int, world: World,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_VAR, PASSWORD)
    places = Places(needles=ECHO_NEEDLES)
    with EchoSmtpServer(echo_at=stage, code=code, form="line") as server:
        plan = _echo_plan(world.root / "plan-echo", server.port, world)
        await _app_run(plan, world.root / "state-echo", places, f"echo at {stage} {code}", typed=False)
        assert server.auth_lines
    places.tree(world.root)
    assert any("send screen" in place for place in places.checked)
    places.record(f"SMTP server echoing AUTH: {stage} {code} (app)")
