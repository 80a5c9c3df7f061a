"""A loopback SMTP server that echoes the client's AUTH exchange back in its replies (test only).

Real servers do this: some put the failed command in their 535 (`535 5.7.8 Error: authentication
failed: 'AUTH PLAIN AHVzZXIAcGFzcw=='`), some repeat the last command they did not like at MAIL,
RCPT or DATA, and a hostile one can say anything anywhere. This one answers normally except at
the stage it is told to echo at, where it puts what the client sent in AUTH (the lines as they
came, or decoded, cut short, split over a multi-line reply, upper-cased, URL-quoted) into its
reply:

    with EchoSmtpServer(echo_at="auth", code=535) as server:   # a refused login that echoes
    with EchoSmtpServer(echo_at="rcpt", code=550) as server:   # login fine, RCPT refused with the echo
    with EchoSmtpServer(echo_at="greeting", code=421) as s:    # a later connection's greeting echoes

Stages: "auth", "mail", "rcpt", "data" (the reply to the final "."), "greeting" and "ehlo" (on
every connection after the one that logged in: the server closes each connection after its first
message, so a send opens new ones), and "garbage" (a line that is not SMTP at MAIL). Speaks just
enough ESMTP for relcomm's client: EHLO (PIPELINING, 8BITMIME, AUTH), AUTH PLAIN (inline or after
334) and LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Real TCP on 127.0.0.1 in its own thread.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

STAGES = ("auth", "mail", "rcpt", "data", "greeting", "ehlo", "garbage")
FORMS = ("line", "decoded", "truncated", "split", "upper", "quoted")


def _decoded(lines: list[str]) -> str:
    """The AUTH exchange with every base64 token decoded, as a server's log line would show it."""
    out = []
    for line in lines:
        words = []
        for word in line.split(" "):
            try:
                words.append(base64.b64decode(word, validate=True).decode("utf-8").replace("\0", " "))
            except (ValueError, UnicodeDecodeError):
                words.append(word)
        out.append(" ".join(words))
    return " | ".join(out)


@dataclass
class EchoSmtpServer:
    echo_at: str = "auth"
    code: int = 535
    form: str = "line"
    methods: str = "PLAIN LOGIN"
    host: str = "127.0.0.1"
    port: int = 0
    auth_lines: list[str] = field(default_factory=list)   # what the client sent in AUTH, last login
    messages: int = 0                                    # messages answered 250 at the final "."
    connections: int = 0

    def __post_init__(self) -> None:
        assert self.echo_at in STAGES and self.form in FORMS, (self.echo_at, self.form)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- what is echoed -------------------------------------------------------------------

    def echo(self) -> str:
        seen = " ".join(self.auth_lines)
        if self.form == "decoded":
            return _decoded(self.auth_lines)
        if self.form == "truncated":
            return seen[:64]
        if self.form == "upper":
            return seen.upper()
        if self.form == "quoted":
            return quote(_decoded(self.auth_lines), safe="")
        return seen

    def reply(self, code: int, enhanced: str, words: str) -> bytes:
        echo = self.echo()
        if self.form == "split":  # the echo over a multi-line reply, one half per line
            half = len(echo) // 2
            return (f"{code}-{enhanced} {words}: '{echo[:half]}\r\n"
                    f"{code} {enhanced} {echo[half:]}'\r\n").encode()
        return f"{code} {enhanced} {words}: '{echo}'\r\n".encode()

    # -- one session ----------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        later = bool(self.auth_lines)  # a connection after one that logged in
        try:
            if self.echo_at == "greeting" and later:
                writer.write(self.reply(self.code, "4.3.2" if self.code < 500 else "5.3.2", "not now"))
                await writer.drain()
                return
            writer.write(b"220 echo.example ESMTP\r\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                verb = text.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    if self.echo_at == "ehlo" and later:
                        writer.write(self.reply(self.code, "5.5.2", "who are you"))
                    else:
                        writer.write(f"250-echo.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                     f"250 AUTH {self.methods}\r\n".encode())
                elif verb == "AUTH":
                    await self._auth(text, reader, writer)
                elif verb == "MAIL":
                    if self.echo_at == "garbage":
                        writer.write(f"hello {self.echo()}\r\n".encode())
                    else:
                        writer.write(self.reply(self.code, "5.7.1", "sender refused") if self.echo_at == "mail"
                                     else b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    writer.write(self.reply(self.code, "5.1.1", "recipient refused") if self.echo_at == "rcpt"
                                 else b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    if self.echo_at in ("mail", "rcpt", "garbage"):
                        writer.write(b"503 5.5.1 no valid recipients\r\n")
                        await writer.drain()
                        continue
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    if self.echo_at == "data":
                        writer.write(self.reply(self.code, "5.6.0", "message refused"))
                    else:
                        self.messages += 1
                        writer.write(b"250 2.0.0 queued\r\n")
                        if self.echo_at in ("greeting", "ehlo"):  # one message per connection: new ones greet
                            await writer.drain()
                            return
                elif verb in ("RSET", "NOOP"):
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 not implemented\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _auth(self, text: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = [text]
        mechanism = (text.split(" ") + ["", ""])[1].upper()
        if mechanism == "PLAIN" and len(text.split(" ")) < 3:
            writer.write(b"334 \r\n")
            await writer.drain()
            lines.append((await reader.readline()).decode().rstrip("\r\n"))
        elif mechanism == "LOGIN":
            for prompt in (b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n"):
                writer.write(prompt)
                await writer.drain()
                lines.append((await reader.readline()).decode().rstrip("\r\n"))
        self.auth_lines = lines
        if self.echo_at == "auth":
            writer.write(self.reply(self.code, "5.7.8" if self.code >= 500 else "4.7.0", "authentication failed"))
        else:
            writer.write(b"235 2.7.0 authenticated\r\n")

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> "EchoSmtpServer":
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._session, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            self._loop.run_forever()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="echo-smtp", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the echo server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
