"""A real IMAP server on loopback for the receipts tests: Dovecot (Debian package dovecot-imapd)
started with a private config in a temp folder, IMAPS with a throwaway self-signed certificate.

Dovecot refuses mail access as root, so the mailbox belongs to `nobody`; starting it needs root
(as in CI). `DovecotServer.available()` says whether this machine can run it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DovecotServer:
    user = "relcomm"
    password = "imap-secret"

    def __init__(self, folder: Path | None = None) -> None:
        # Its own folder under /tmp, traversable (0711): Dovecot's auth and mail processes run as
        # other users and cannot enter pytest's private (0700) tmp_path.
        self.folder = Path(tempfile.mkdtemp(prefix="relcomm-dovecot-", dir=folder))
        os.chmod(self.folder, 0o711)
        self.port = _free_port()
        self.maildir = self.folder / "home" / "Maildir"
        self.process: subprocess.Popen | None = None
        self.owner = pwd.getpwnam("nobody")

    @staticmethod
    def available() -> str | None:
        """None when Dovecot can be started here, else why not."""
        if not os.path.exists(DOVECOT):
            return "dovecot is not installed (apt-get install dovecot-imapd)"
        if os.geteuid() != 0:
            return "starting dovecot needs root"
        if not shutil.which("openssl"):
            return "openssl is not installed"
        return None

    @property
    def url(self) -> str:
        return f"imaps://{self.user}@127.0.0.1:{self.port}/INBOX?insecure=1"

    def start(self) -> "DovecotServer":
        f = self.folder
        for sub in ("run", "state", "home"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", str(f / "key.pem"), "-out", str(f / "cert.pem")],
                       check=True, capture_output=True)
        (f / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        uid, gid = self.owner.pw_uid, self.owner.pw_gid
        (f / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {f}/run
state_dir = {f}/state
log_path = {f}/dovecot.log
info_log_path = {f}/dovecot.log
ssl = required
ssl_cert = <{f}/cert.pem
ssl_key = <{f}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:{self.maildir}
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {f}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={f}/home
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
        self.chown()
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(f / "dovecot.conf")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.process.stdout.read().decode(errors='replace')}"
                                   f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def chown(self) -> None:
        """Messages written by the test (as root) must belong to the mailbox's owner."""
        home = self.folder / "home"
        for root, dirs, files in os.walk(home):
            for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, x) for x in files)]:
                os.chown(name, self.owner.pw_uid, self.owner.pw_gid)

    def rebuild_mailbox(self, uidvalidity: int) -> None:
        """What a restored backup or a migrated server does: the same messages, a new UIDVALIDITY
        (every UID a client remembered is void). Dovecot rebuilds its indexes from the uidlist."""
        for path in self.maildir.glob("dovecot*"):
            path.unlink()
        (self.maildir / "dovecot-uidlist").write_text(f"3 V{uidvalidity} N1\n")
        self.chown()

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)
