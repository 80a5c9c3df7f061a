"""A real Postfix on loopback for the receipts tests: Postfix 3.x (Debian package postfix) started
as its own instance (`postfix -c DIR`) with a config and queue written into a temp folder at test
time; nothing of it lives in the repository.

What it does, so the tests get real reports from a real MTA:
* listens on 127.0.0.1:<free port> only, accepts mail from loopback for any domain below;
* `example.test` is a virtual domain delivered into Maildirs under `mail/` (the receipts address
  and the good recipients); any other user there is unknown and bounces with a real DSN (the
  unlisted recipient is accepted at RCPT so that the bounce comes back as mail, as from a remote
  server);
* `slow.test` routes to a closed loopback port: deferred forever, and with `delay_warning_time =
  1s` Postfix sends a real delay DSN (`postqueue -f` hurries the retries);
* `relay.test` routes to a loopback port where the test may later start an SMTP server that does
  not speak DSN: Postfix then reports `Action: relayed`.

Postfix needs root to start (as in CI, where .ci/run installs it); `PostfixServer.available()`
says whether this machine can run it.
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

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostfixServer:
    domain = "example.test"

    def __init__(self, mailboxes: list[str]) -> None:
        # Its own folder under /tmp, traversable (0711): Postfix's daemons run as `postfix` and
        # `nobody` and cannot enter pytest's private (0700) tmp_path.
        self.folder = Path(tempfile.mkdtemp(prefix="relcomm-postfix-"))
        os.chmod(self.folder, 0o711)
        self.conf = self.folder / "conf"
        self.mail = self.folder / "mail"
        self.port = free_port()
        self.slow_port = free_port()   # nothing ever listens here
        self.relay_port = free_port()  # the test may start a server here later
        self.mailboxes = list(mailboxes)
        self.owner = pwd.getpwnam("nobody")
        self.started = False

    @staticmethod
    def available() -> str | None:
        """None when Postfix can be started here, else why not."""
        if not os.path.exists(POSTFIX):
            return "postfix is not installed (apt-get install postfix)"
        if os.geteuid() != 0:
            return "starting postfix needs root"
        for user in ("postfix", "nobody"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"there is no {user} user"
        return None

    def maildir(self, local: str) -> Path:
        return self.mail / local

    def start(self) -> "PostfixServer":
        f = self.folder
        self.conf.mkdir(mode=0o755)
        for sub in ("queue", "data", "mail"):
            (f / sub).mkdir()
        os.chown(f / "data", pwd.getpwnam("postfix").pw_uid, -1)
        for local in self.mailboxes:
            for sub in ("new", "cur", "tmp"):
                (self.mail / local / sub).mkdir(parents=True, exist_ok=True)
        for root, dirs, _ in os.walk(self.mail):
            for name in [root, *(os.path.join(root, d) for d in dirs)]:
                os.chown(name, self.owner.pw_uid, self.owner.pw_gid)
        self.write_mailboxes(self.mailboxes)
        (self.conf / "transport").write_text(f"slow.test smtp:[127.0.0.1]:{self.slow_port}\n"
                                             f"relay.test smtp:[127.0.0.1]:{self.relay_port}\n")
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {f}/queue
data_directory = {f}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.relcomm.test
mydomain = relcomm.test
myorigin = relcomm.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.conf}/mailboxes
virtual_uid_maps = static:{self.owner.pw_uid}
virtual_gid_maps = static:{self.owner.pw_gid}
virtual_minimum_uid = 1
transport_maps = texthash:{self.conf}/transport
smtp_dns_support_level = disabled
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
alias_maps =
alias_database =
biff = no
maillog_file = {f}/maillog
maillog_file_prefixes = {f}
""")
        (self.conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        done = subprocess.run([POSTFIX, "-c", str(self.conf), "start"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.log()
            self.stop()
            raise RuntimeError(f"postfix did not start: {done.stdout}{done.stderr}{log}")
        self.started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError(f"postfix did not listen on {self.port}: {log}")

    def write_mailboxes(self, locals_: list[str]) -> None:
        (self.conf / "mailboxes").write_text("".join(f"{name}@{self.domain} {name}/\n" for name in locals_))

    def reload(self) -> None:
        """Re-read the config and tables (after write_mailboxes); returns once the master says so."""
        before = self.log().count("reload -- version")
        subprocess.run([POSTFIX, "-c", str(self.conf), "reload"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while self.log().count("reload -- version") <= before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not reload: {self.log()}")
            time.sleep(0.05)

    def flush(self) -> None:
        """Retry every deferred message now (postqueue -f)."""
        subprocess.run([POSTQUEUE, "-c", str(self.conf), "-f"], capture_output=True, timeout=60)

    def _master_pid(self) -> int | None:
        try:
            return int((self.folder / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.started:
            subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True, timeout=60)
            pid = self._master_pid()
            deadline = time.monotonic() + 20
            while pid is not None and _alive(pid):
                if time.monotonic() > deadline:
                    subprocess.run([POSTFIX, "-c", str(self.conf), "abort"], capture_output=True, timeout=60)
                    break
                time.sleep(0.05)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
