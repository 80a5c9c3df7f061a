"""Incremental inbound sources: Maildir, mbox and (with a private dovecot) IMAP."""

from __future__ import annotations

import builtins
import getpass
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import campaign
import pytest

from relcomm_tui.receipts.sources import ImapSource, InboundMessage, MaildirSource, MboxSource, maildir_key


def _msg(i: int) -> bytes:
    m = EmailMessage()
    m["From"] = f"user{i}@example.net"
    m["To"] = "releases@example.com"
    m["Subject"] = f"message {i}"
    m["Message-ID"] = f"<m{i}@example.net>"
    m.set_content(f"body {i}\nFrom the start of a line\n")
    return m.as_bytes()


def _make_maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


class Seen:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def __call__(self, key: str) -> bool:
        return key in self.keys

    def take(self, msgs) -> list[InboundMessage]:
        out = list(msgs)
        self.keys.update(m.key for m in out)
        return out


# --------------------------------------------------------------------------- Maildir


def test_maildir_key_strips_flags():
    assert maildir_key("1700000000.M1P2.host:2,RS") == "1700000000.M1P2.host"
    assert maildir_key("1700000000.M1P2.host") == "1700000000.M1P2.host"
    assert maildir_key("1700000000.M1P2.host;2,S") == "1700000000.M1P2.host"


def test_maildir_reads_new_and_cur_incrementally_without_moving(tmp_path):
    md = _make_maildir(tmp_path / "Maildir")
    (md / "new" / "100.A.host").write_bytes(_msg(1))
    (md / "cur" / "101.B.host:2,S").write_bytes(_msg(2))
    (md / "tmp" / "102.C.host").write_bytes(_msg(3))  # still being delivered: ignored
    src = MaildirSource(md)
    seen = Seen()

    first = seen.take(src.read_new(seen))
    assert sorted(m.key for m in first) == ["100.A.host", "101.B.host"]
    assert {m.raw for m in first} == {_msg(1), _msg(2)}
    assert src.count_opened == 2
    # nothing moved, renamed or deleted
    assert sorted(os.listdir(md / "new")) == ["100.A.host"]
    assert sorted(os.listdir(md / "cur")) == ["101.B.host:2,S"]

    # refresh with nothing new opens nothing
    assert seen.take(src.read_new(seen)) == []
    assert src.count_opened == 2

    # an MUA moves a message new -> cur and flags it: same key, not re-read
    os.rename(md / "new" / "100.A.host", md / "cur" / "100.A.host:2,RS")
    (md / "new" / "103.D.host").write_bytes(_msg(4))
    again = seen.take(src.read_new(seen))
    assert [m.key for m in again] == ["103.D.host"]
    assert again[0].raw == _msg(4)
    assert src.count_opened == 3


def test_maildir_never_opens_seen_files(tmp_path, monkeypatch):
    md = _make_maildir(tmp_path / "md")
    for i in range(20):
        (md / "cur" / f"{i:03d}.X.host:2,S").write_bytes(_msg(i))
    src = MaildirSource(md)
    seen = Seen()
    seen.take(src.read_new(seen))
    (md / "new" / "999.Y.host").write_bytes(_msg(999))

    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy(file, *args, **kwargs):
        opened.append(os.path.basename(os.fspath(file)))
        return real_open(file, *args, **kwargs)

    def os_spy(file, *args, **kwargs):  # messages are opened with os.open (O_NOFOLLOW | O_NONBLOCK)
        opened.append(os.path.basename(os.fspath(file)))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(os, "open", os_spy)
    new = seen.take(src.read_new(seen))
    monkeypatch.undo()
    assert [m.key for m in new] == ["999.Y.host"]
    assert opened == ["999.Y.host"]


def test_maildir_missing_dirs_yield_nothing(tmp_path):
    assert list(MaildirSource(tmp_path / "nope").read_new(lambda k: False)) == []


# --------------------------------------------------------------------------- mbox


def _mbox_append(path: Path, raws: list[bytes]) -> None:
    with open(path, "ab") as fh:
        for raw in raws:
            body = raw.replace(b"\nFrom ", b"\n>From ")
            fh.write(b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n" + body)
            if not body.endswith(b"\n"):
                fh.write(b"\n")
            fh.write(b"\n")


def test_mbox_incremental_and_stable_keys(tmp_path):
    box = tmp_path / "inbox.mbox"
    _mbox_append(box, [_msg(1), _msg(2)])
    src = MboxSource(box)
    seen = Seen()
    first = seen.take(src.read_new(seen))
    assert len(first) == 2
    assert first[0].key.startswith("0:")
    assert first[0].raw == _msg(1)  # From_ quoting undone
    assert first[1].raw == _msg(2)
    assert src.count_opened == 2

    assert seen.take(src.read_new(seen)) == []
    assert src.count_opened == 2

    _mbox_append(box, [_msg(3)])
    again = seen.take(src.read_new(seen))
    assert [m.raw for m in again] == [_msg(3)]
    assert src.count_opened == 3

    # keys are stable across fresh source objects
    keys = [m.key for m in MboxSource(box).read_new(lambda k: False)]
    assert keys[:2] == [m.key for m in first]


def test_mbox_rewritten_file_changes_keys(tmp_path):
    box = tmp_path / "inbox.mbox"
    _mbox_append(box, [_msg(1), _msg(2)])
    seen = Seen()
    seen.take(MboxSource(box).read_new(seen))
    box.unlink()
    _mbox_append(box, [_msg(5)])  # same offset 0, different message
    new = seen.take(MboxSource(box).read_new(seen))
    assert [m.raw for m in new] == [_msg(5)]


def test_mbox_missing_file(tmp_path):
    assert list(MboxSource(tmp_path / "none").read_new(lambda k: False)) == []


# --------------------------------------------------------------------------- IMAP (private dovecot)

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dovecot(tmp_path):
    if DOVECOT is None:
        # CI installs it (.ci/run) and sets RELCOMM_REQUIRE_IMAP so a missing server fails there.
        if os.environ.get("RELCOMM_REQUIRE_IMAP"):
            pytest.fail("dovecot not installed but RELCOMM_REQUIRE_IMAP is set (apt-get install dovecot-imapd)")
        pytest.skip("dovecot not installed (Debian package: dovecot-imapd)")
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI needed to make the test certificate")
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        # dovecot will not run mail or login processes as root: use its own users, in a
        # world-readable scratch dir (pytest's tmp dirs are private to root)
        root = Path(tempfile.mkdtemp(prefix="relcomm-dovecot-"))
        os.chmod(root, 0o755)
    else:
        root = tmp_path / "dovecot"
    for d in ("run", "state", "mail", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
        check=True, capture_output=True,
    )
    me = getpass.getuser()
    if uid == 0:
        login_user = "dovenull" if _user_exists("dovenull") else "nobody"
        internal_user = "dovecot" if _user_exists("dovecot") else "nobody"
        pw = pwd.getpwnam(internal_user)
        uid, gid = pw.pw_uid, pw.pw_gid
        for d in ("mail", "home"):
            os.chown(root / d, uid, gid)
    else:
        login_user = internal_user = me
    (root / "passwd").write_text(f"tester:{{PLAIN}}s3cret:{uid}:{gid}::{root / 'home'}::\n")
    imap_port, imaps_port = _free_port(), _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(f"""
base_dir = {root / 'run'}
state_dir = {root / 'state'}
log_path = {root / 'dovecot.log'}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root / 'cert.pem'}
ssl_key = <{root / 'key.pem'}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 0
mail_location = maildir:{root / 'mail'}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root / 'passwd'}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root / 'home'}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}

service imap-login {{
  chroot =
}}
""")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                pytest.fail(f"dovecot exited: {out}\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", imaps_port), timeout=0.5):
                    with socket.create_connection(("127.0.0.1", imap_port), timeout=0.5):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("dovecot did not start listening")
        yield {"imap_port": imap_port, "imaps_port": imaps_port, "log": root / "dovecot.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if root != tmp_path / "dovecot":
            shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _deliver_via_imap(port: int, user: str, password: str, raws: list[bytes]) -> None:
    import imaplib

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    conn.login(user, password)
    for raw in raws:
        typ, _ = conn.append("INBOX", None, None, raw.replace(b"\n", b"\r\n"))
        assert typ == "OK"
    conn.logout()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_imap_source_incremental(dovecot, scheme):
    port = dovecot["imaps_port"] if scheme == "imaps" else dovecot["imap_port"]
    _deliver_via_imap(dovecot["imaps_port"], "tester", "s3cret", [_msg(1), _msg(2)])
    url = f"{scheme}://tester@127.0.0.1:{port}/INBOX?insecure=1"
    src = ImapSource(url, "s3cret")
    seen = Seen()
    first = seen.take(src.read_new(seen))
    assert len(first) == 2
    uidvalidity = first[0].key.split(":")[0]
    assert [m.key for m in first] == [f"{uidvalidity}:1", f"{uidvalidity}:2"]
    assert first[0].raw.replace(b"\r\n", b"\n") == _msg(1)
    assert src.count_opened == 2

    assert seen.take(src.read_new(seen)) == []
    assert src.count_opened == 2

    _deliver_via_imap(dovecot["imaps_port"], "tester", "s3cret", [_msg(3)])
    again = seen.take(src.read_new(seen))
    assert [m.key for m in again] == [f"{uidvalidity}:3"]
    assert src.count_opened == 3

    # read-only: nothing was flagged \\Seen or expunged
    import imaplib

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = imaplib.IMAP4_SSL("127.0.0.1", dovecot["imaps_port"], ssl_context=ctx)
    conn.login("tester", "s3cret")
    conn.select("INBOX", readonly=True)
    typ, data = conn.uid("SEARCH", None, "UNSEEN")
    assert data[0].split() == [b"1", b"2", b"3"]
    conn.logout()


@pytest.mark.timeout(60)
def test_imap_source_rejects_bad_password(dovecot):
    import imaplib

    src = ImapSource(f"imaps://tester@127.0.0.1:{dovecot['imaps_port']}/INBOX?insecure=1", "wrong")
    with pytest.raises(imaplib.IMAP4.error):
        list(src.read_new(lambda k: False))


@pytest.mark.timeout(60)
def test_imap_source_verifies_certificate_by_default(dovecot):
    src = ImapSource(f"imaps://tester@127.0.0.1:{dovecot['imaps_port']}/INBOX", "s3cret")
    with pytest.raises(ssl.SSLError):
        list(src.read_new(lambda k: False))


def test_imap_url_parsing():
    src = ImapSource("imap://me%40corp@mail.example.com/Receipts%20Box", "pw")
    assert (src.host, src.port, src.user, src.mailbox, src.scheme) == (
        "mail.example.com", 143, "me@corp", "Receipts Box", "imap")
    assert ImapSource("imaps://u@h", "pw").port == 993
    with pytest.raises(ValueError):
        ImapSource("pop3://u@h", "pw")


# --------------------------------------------------------------------------- not files (issue 10, item 12)


@pytest.mark.campaign
def test_a_fifo_device_or_symlink_in_a_maildir_is_skipped_without_blocking(tmp_path):
    """Anyone who can write to the receipts Maildir could leave a FIFO there: opening it blocks
    until a writer comes, so `relcomm receipts --refresh` would hang. Only regular files are read."""
    import stat

    md = _make_maildir(tmp_path / "md")
    (md / "new" / "001.A.host").write_bytes(_msg(1))
    os.mkfifo(md / "new" / "002.FIFO.host")
    os.mkfifo(md / "cur" / "003.FIFO.host:2,S")
    (md / "new" / "004.ZERO.host").symlink_to("/dev/zero")
    secret = tmp_path / "secret.eml"
    secret.write_bytes(_msg(666))
    (md / "cur" / "005.LINK.host:2,S").symlink_to(secret)
    (md / "new" / "006.DIR.host").mkdir()
    (md / "new" / "007.B.host").write_bytes(_msg(7))
    try:
        os.mknod(md / "new" / "008.NULL.host", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError:
        pass  # not root: the symlink to /dev/zero stands for a device
    src = MaildirSource(md)
    seen = Seen()
    try:
        got = _with_deadline(lambda: seen.take(src.read_new(seen)), md)
    finally:
        _unblock(md)
    odd = len(list((md / "new").iterdir()) + list((md / "cur").iterdir())) - 2
    campaign.record("input", "paths: FIFOs, devices, symlinks in a receipts Maildir", tried=odd,
                    held=odd if [m.raw for m in got] == [_msg(1), _msg(7)] else 0)
    assert [m.raw for m in got] == [_msg(1), _msg(7)]
    assert src.count_opened == 2


def test_relcomm_receipts_refresh_finishes_with_a_fifo_in_the_maildir(tmp_path, capsys):
    from relcomm_tui.commands.main import main

    folder = tmp_path / "plan"
    md = _make_maildir(folder / "receipts")
    os.mkfifo(md / "new" / "001.FIFO.host")
    (md / "new" / "002.A.host").write_bytes(_msg(2))
    (folder / "plan.toml").write_text("""format = 1
[release]
name = "Orion"
version = "4.2.0"
[sender]
from = "Release Engineering <release@example.com>"
[receipts]
sources = [{ maildir = "receipts" }]
[[stakeholders]]
id = "eng"
name = "Engineering"
members = ["Eng <eng@example.com>"]
[[communiques]]
id = "news"
to = ["eng"]
subject = "Orion 4.2.0"
body = "Hello"
""", encoding="utf-8")
    assert main(["send", str(folder / "plan.toml"), "--dry-run"]) == 0  # a ledger to record into
    try:
        code = _with_deadline(lambda: main(["receipts", str(folder / "plan.toml"), "--refresh", "--json"]), md)
    finally:
        _unblock(md)
    out = capsys.readouterr().out
    refreshed = json.loads(out[out.index("{"):])["refresh"]
    assert code == 0 and refreshed["read"] == 1 and refreshed["problems"] == []


def test_an_mbox_that_is_a_fifo_or_device_is_refused_with_a_clear_problem(tmp_path):
    from relcomm_tui.common.errors import UserError

    fifo = tmp_path / "inbox.mbox"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.mbox"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (zero, "a character device")):
        with pytest.raises(UserError) as caught:
            _with_deadline(lambda: list(MboxSource(path).read_new(lambda k: False)), tmp_path)
        assert str(path) in caught.value.message and kind in caught.value.message and caught.value.hint
    real = tmp_path / "real.mbox"
    _mbox_append(real, [_msg(1)])
    linked = tmp_path / "linked.mbox"
    linked.symlink_to(real)  # a symlink to a regular mbox is the engineer's own setup: read
    assert [m.raw for m in MboxSource(linked).read_new(lambda k: False)] == [_msg(1)]


def _with_deadline(call, folder: Path, seconds: float = 60.0):
    """Run `call` in a thread; if it is still blocked after `seconds` (the code before the fix
    opened FIFOs), unblock it and fail, instead of hanging the test run."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(call)
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            _unblock(folder)
            future.result(timeout=seconds)
            pytest.fail("reading the source blocked on a FIFO")


def _unblock(folder: Path) -> None:
    """Open every FIFO under `folder` for writing and close it: a reader stuck on one goes on."""
    import stat

    for path in folder.rglob("*"):
        try:
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
