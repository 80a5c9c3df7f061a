"""Hardening campaign (issue 6), secrets beyond the SMTP password: what else a plan can hold as a
secret reference must reach the service that needs it and come out nowhere else.

- a webhook `url` that carries its token in the path (as a Slack URL does), from { env = ... };
- a webhook header value (Authorization), from { command = ... };
- a pager routing_key (PagerDuty), from { env = ... };
- an IMAP receipts source password, from { env = ... }, when a real Dovecot refuses the login.

Sent for real to the loopback receiver answering 200, 500, not at all (a hang: in doubt), and 404
with the request echoed back (path, Authorization, body: as Express's default 404 does), and to a
port where nothing listens (connection refused); and as a dry run; then `status`, `receipts`, `report` (md, html, csv). Checked as test_secrets_leak.py does
(same Places and world): every file under the test's world, every stdout/stderr, the app's
exported checklist and send screens; in clear, URL-quoted, HTML-escaped, UTF-16 and base64.
The receiver must have got each secret: that proves the secret was used, not skipped.
"""

from __future__ import annotations

import base64
import html
import os
import socket
from pathlib import Path
from urllib.parse import quote

import keyring  # noqa: F401  (test_secrets_leak's world expects it importable)
import pytest

from imap_server import DovecotServer
from relcomm_tui.plan import consent
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.send import SendScreen
from http_receiver import Reply, ScriptedReceiver, hang, pagerduty_reply
from test_secrets_leak import Places, World, _base64_cores, relcomm, world  # noqa: F401  (world is a fixture)
from tui_helpers import settle

import campaign

URL_TOKEN = "xoxLEAKhook7Qw9Zr2TkV4"   # the token part of a chat webhook URL
HEADER_TOKEN = "hdrLEAK-5mN8pV3cQ1xR"    # Authorization: Bearer <this>
ROUTING_KEY = "R0UTELEAK9c1e7b3d5f2a4"   # a PagerDuty integration key
IMAP_PASSWORD = "imapLEAK-wR0ng~7Hq2!z"  # refused by the server



def echo(request) -> str:
    """What a careless endpoint answers (Express's default 404, an echo service): the request back,
    path, Authorization and body, so the secrets come back in the answer relcomm keeps."""
    return f"Cannot {request.method} {request.path} ({request.headers.get('authorization')}): {request.text}"


ANSWERS = {"200": Reply(200, "ok"), "500": Reply(500, "internal error"), "hang": hang(60.0),
           "echo": Reply(404, echo)}


def needles_for(secret: str) -> dict[str, bytes]:
    """Every form of `secret` that counts as a leak."""
    raw = secret.encode()
    return {
        "clear": raw,
        "url-quoted": quote(secret, safe="").encode(),
        "html-escaped": html.escape(secret).encode(),
        "utf-16": secret.encode("utf-16-le"),
        "base64": base64.b64encode(raw),
        **{f"base64 at offset {i}": core for i, core in enumerate(_base64_cores(raw))},
    }


def looking_for(*secrets: str) -> Places:
    needles: dict[str, bytes] = {}
    for secret in secrets:
        needles |= {f"{secret[:7]}… {form}": needle for form, needle in needles_for(secret).items()}
    return Places(needles=needles)


# --------------------------------------------------------------------------- the plan

PLAN_HEAD = """format = 1
[release]
name = "Orion"
version = "4.2.0"

[sender]
from = "Release Engineering <release@orion.example.com>"

[channels.webhook]
max_attempts = 1   # a 500 is deferred at once: the next send would retry it

[channels.pager]
max_attempts = 1

[[stakeholders]]
id = "engineering"
name = "Engineering"
members = ["Engineering list <eng@example.com>"]
"""


def url_path(answer: str) -> str:
    return f"/services/T{answer.upper()}/B0/{URL_TOKEN}"


def write_channels_plan(folder: Path, receiver: ScriptedReceiver, vault: Path, answers=tuple(ANSWERS)) -> Path:
    """Per answer: a chat webhook whose url is { env = ... }, a JSON webhook whose Authorization
    header is { command = ... }, and a PagerDuty page whose routing_key is { env = ... }; and one
    chat webhook (url and header secret) where nothing listens."""
    folder.mkdir(parents=True, exist_ok=True)
    (vault / "hook-auth").write_text(f"Bearer {HEADER_TOKEN}\n", encoding="utf-8")
    parts = [PLAN_HEAD]
    for answer in answers:
        parts.append(f"""
[[communiques]]
id = "chat-{answer}"
to = ["engineering"]
channel = "webhook"
preset = "slack"
url = {{ env = "RELCOMM_LEAKTEST_HOOK_{answer.upper()}" }}
body = "Orion {{{{ release.version }}}} is out"

[[communiques]]
id = "api-{answer}"
to = ["engineering"]
channel = "webhook"
preset = "json"
url = "{receiver.url(f'/api/{answer}')}"
headers = {{ Authorization = {{ command = "cat {vault / 'hook-auth'}" }} }}
body = "Orion {{{{ release.version }}}} is out"

[[communiques]]
id = "page-{answer}"
to = ["engineering"]
channel = "pager"
preset = "pagerduty"
url = "{receiver.url(f'/pd/{answer}')}"
routing_key = {{ env = "RELCOMM_LEAKTEST_ROUTING_KEY" }}
severity = "info"
subject = "Orion {{{{ release.version }}}} is out"
body = "Orion {{{{ release.version }}}} is out"
""")
        receiver.answer(url_path(answer), ANSWERS[answer])
        receiver.answer(f"/api/{answer}", ANSWERS[answer])
        pd = ANSWERS[answer] if answer != "200" else Reply(202, pagerduty_reply)
        receiver.answer(f"/pd/{answer}", pd)
    # nothing listens there: connection refused, before anything was sent
    parts.append(f"""
[[communiques]]
id = "chat-down"
to = ["engineering"]
channel = "webhook"
preset = "slack"
url = {{ env = "RELCOMM_LEAKTEST_HOOK_DOWN" }}
headers = {{ Authorization = {{ command = "cat {vault / 'hook-auth'}" }} }}
body = "Orion {{{{ release.version }}}} is out"
""")
    (folder / "plan.toml").write_text("".join(parts), encoding="utf-8")
    return folder / "plan.toml"


def secret_env(receiver: ScriptedReceiver) -> dict[str, str]:
    env = {f"RELCOMM_LEAKTEST_HOOK_{a.upper()}": receiver.url(url_path(a)) for a in ANSWERS}
    env["RELCOMM_LEAKTEST_ROUTING_KEY"] = ROUTING_KEY
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env["RELCOMM_LEAKTEST_HOOK_DOWN"] = f"http://127.0.0.1:{port}/services/TDOWN/B0/{URL_TOKEN}"
    return env


def assert_received(receiver: ScriptedReceiver, answers=tuple(ANSWERS)) -> int:
    """Each secret reached the receiver, once per communique (a hang or a 500 is not re-posted
    within one run). Returns how many requests arrived."""
    for answer in answers:
        assert len(receiver.requests_for(url_path(answer))) == 1, answer  # the token was the path
        [api] = receiver.requests_for(f"/api/{answer}")
        assert api.headers["authorization"] == f"Bearer {HEADER_TOKEN}"
        [page] = receiver.requests_for(f"/pd/{answer}")
        assert page.json()["routing_key"] == ROUTING_KEY
    return len(receiver.requests)


# --------------------------------------------------------------------------- headless


@pytest.mark.campaign
@pytest.mark.slow
def test_webhook_and_pager_secrets_are_used_and_never_shown_or_written(world: World):
    places = looking_for(URL_TOKEN, HEADER_TOKEN, ROUTING_KEY)
    with ScriptedReceiver() as receiver:
        world.env.update(secret_env(receiver))
        plan = write_channels_plan(world.root / "plan-hooks", receiver, world.vault)
        relcomm(world, places, "webhook", "validate", str(plan), "--allow-commands", expect=None)

        dry = relcomm(world, places, "webhook", "send", str(plan), "--dry-run", "--allow-commands")
        assert "nothing was sent" in dry.stdout
        assert receiver.requests == []  # a dry run posts nothing
        outbox = sorted((world.root / "plan-hooks" / ".relcomm").rglob("*.json"))
        assert len(outbox) == 3 * len(ANSWERS) + 1, outbox
        assert any('"(secret)"' in path.read_text() for path in outbox)  # header and routing key masked

        sent = relcomm(world, places, "webhook", "send", str(plan), "--yes", "--allow-commands", expect=1)
        assert "in doubt" in sent.stdout and "deferred" in sent.stdout and "rejected" in sent.stdout, sent.stdout
        assert "cannot connect to http://127.0.0.1:" in sent.stdout, sent.stdout  # chat-down was tried
        arrived = assert_received(receiver)

        relcomm(world, places, "webhook", "status", str(plan))
        relcomm(world, places, "webhook", "status", str(plan), "--json")
        relcomm(world, places, "webhook", "receipts", str(plan), expect=None)
        relcomm(world, places, "webhook", "receipts", str(plan), "--json", expect=None)
        for fmt in ("md", "html", "csv"):
            relcomm(world, places, "webhook", "report", str(plan), "--format", fmt)
            relcomm(world, places, "webhook", "report", str(plan), "-o", str(world.root / f"report.{fmt}"))

    places.tree(world.root)
    names = " ".join(places.checked)
    for written in ("ledger.sqlite", ".relcomm/outbox/", "report.md", "report.html", "report.csv",
                    "stdout of relcomm send", "stdout of relcomm status", "stdout of relcomm receipts"):
        assert written in names, written
    assert arrived == 3 * len(ANSWERS)
    places.record("webhook url, webhook header, pager routing_key (CLI: 200, 500, hang, echo, refused, dry run)")


# --------------------------------------------------------------------------- the app


@pytest.mark.campaign
@pytest.mark.slow
async def test_the_app_never_shows_webhook_or_pager_secrets(world: World, monkeypatch: pytest.MonkeyPatch):
    places = looking_for(URL_TOKEN, HEADER_TOKEN, ROUTING_KEY)
    with ScriptedReceiver() as receiver:
        for name, value in secret_env(receiver).items():
            monkeypatch.setenv(name, value)
        path = write_channels_plan(world.root / "plan-app", receiver, world.vault)
        consent.grant(load_plan(path))
        state = world.root / "state-app"
        app = build_app(path, state_dir=state, allow_commands=True)
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(pilot)
            places.look("checklist screen", app.export_screenshot())
            app.push_screen(SendScreen(start=True))
            await settle(pilot)
            for _ in range(3):
                await pilot.app.workers.wait_for_complete()
                await pilot.pause()
            places.look("send screen", app.export_screenshot())
            for path_ in sorted(state.rglob("*")):  # while the app holds the ledger: -wal, -shm, lock
                if path_.is_file():
                    places.look(f"open state file {path_.relative_to(state)}", path_.read_bytes())
        arrived = assert_received(receiver)
    places.tree(world.root)
    assert arrived == 3 * len(ANSWERS)
    places.record("webhook url, webhook header, pager routing_key (app: 200, 500, hang, echo, refused)")


# --------------------------------------------------------------------------- IMAP receipts


@pytest.fixture
def dovecot():
    why_not = DovecotServer.available()
    if why_not is not None:
        # .ci/run installs dovecot-imapd and sets RELCOMM_REQUIRE_IMAP, so CI can never skip this.
        if os.environ.get("RELCOMM_REQUIRE_IMAP"):
            pytest.fail(f"IMAP cannot run but RELCOMM_REQUIRE_IMAP is set: {why_not}")
        pytest.skip(f"IMAP: {why_not}")
    server = DovecotServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.campaign
def test_a_refused_imap_password_is_never_shown_or_written(world: World, dovecot: DovecotServer):
    places = looking_for(IMAP_PASSWORD)
    world.env["RELCOMM_LEAKTEST_IMAP_PASSWORD"] = IMAP_PASSWORD
    folder = world.root / "plan-imap"
    folder.mkdir()
    (folder / "plan.toml").write_text(PLAN_HEAD + f"""
[receipts]
sources = [{{ imap = "{dovecot.url}", password = {{ env = "RELCOMM_LEAKTEST_IMAP_PASSWORD" }} }}]

[[communiques]]
id = "news"
to = ["engineering"]
subject = "Orion 4.2.0 is out"
body = "Hello"
""", encoding="utf-8")
    plan = folder / "plan.toml"
    relcomm(world, places, "imap", "validate", str(plan), expect=None)
    relcomm(world, places, "imap", "send", str(plan), "--dry-run")  # a ledger for receipts to read
    refreshed = relcomm(world, places, "imap", "receipts", str(plan), "--refresh", expect=None)
    said = refreshed.stdout + refreshed.stderr
    assert "cannot read IMAP" in said and "Authentication failed" in said, said
    relcomm(world, places, "imap", "receipts", str(plan), "--refresh", "--json", expect=None)
    relcomm(world, places, "imap", "status", str(plan))
    relcomm(world, places, "imap", "report", str(plan), "-o", str(world.root / "report.md"))
    # the server saw the login: the password was used (Dovecot logs the failure, not the password)
    assert "auth failed" in dovecot.log().lower() or "authentication failed" in dovecot.log().lower(), dovecot.log()
    places.tree(world.root)
    assert any("ledger.sqlite" in name for name in places.checked)
    places.record("IMAP receipts password refused (CLI)")


class EchoImapServer:
    """An IMAP server (plain TCP on loopback, test only) that refuses every LOGIN by repeating it,
    as a careless server's error text may: `a1 NO LOGIN release "imapLEAK-..." failed`."""

    def __init__(self) -> None:
        import socketserver
        import threading

        self.logins: list[str] = []
        outer = self

        class Session(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"* OK echo IMAP ready\r\n")
                while line := self.rfile.readline():
                    tag, _, rest = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
                    verb = rest.split(" ", 1)[0].upper()
                    if verb == "CAPABILITY":
                        self.wfile.write(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
                    elif verb == "LOGIN":
                        outer.logins.append(rest)
                        self.wfile.write(f"{tag} NO [AUTHENTICATIONFAILED] {rest} failed\r\n".encode())
                    elif verb == "LOGOUT":
                        self.wfile.write(f"* BYE\r\n{tag} OK bye\r\n".encode())
                        return
                    else:
                        self.wfile.write(f"{tag} BAD {rest}\r\n".encode())

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "EchoImapServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.campaign
def test_an_imap_server_that_echoes_the_login_never_gets_the_password_shown(world: World):
    places = looking_for(IMAP_PASSWORD)
    world.env["RELCOMM_LEAKTEST_IMAP_PASSWORD"] = IMAP_PASSWORD
    folder = world.root / "plan-imap-echo"
    folder.mkdir()
    with EchoImapServer() as server:
        (folder / "plan.toml").write_text(PLAN_HEAD + f"""
[receipts]
sources = [{{ imap = "imap://release@127.0.0.1:{server.port}/INBOX?plaintext=1", password = {{ env = "RELCOMM_LEAKTEST_IMAP_PASSWORD" }} }}]

[[communiques]]
id = "news"
to = ["engineering"]
subject = "Orion 4.2.0 is out"
body = "Hello"
""", encoding="utf-8")
        plan = folder / "plan.toml"
        relcomm(world, places, "imap", "send", str(plan), "--dry-run")
        refreshed = relcomm(world, places, "imap", "receipts", str(plan), "--refresh", expect=None)
        relcomm(world, places, "imap", "receipts", str(plan), "--refresh", "--json", expect=None)
        assert server.logins and IMAP_PASSWORD in server.logins[0], "the server got the password to echo"
    said = refreshed.stdout + refreshed.stderr
    assert "cannot read IMAP" in said and "(secret)" in said, said
    places.tree(world.root)
    places.record("IMAP server echoing the LOGIN line (CLI)")
