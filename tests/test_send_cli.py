"""`relcomm send` and `relcomm status` as a user runs them: exit codes, output, refusals."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.commands.main import main
from relcomm_tui.store.ledger import Ledger
from faulty_mailserver import FaultyMailServer, PermFail

from send_helpers import load, write_plan


@pytest.fixture
def server(tmp_path):
    with FaultyMailServer(maildir=tmp_path / "server-mail") as running:
        yield running


def test_send_yes_sends_everything_and_prints_one_line_per_outcome(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=3)
    assert main(["send", str(plan_file), "--yes"]) == 0
    out = capsys.readouterr().out.splitlines()
    accepted = [line for line in out if line.startswith("accepted ")]
    assert len(accepted) == 3 and all("news" in line and "250" in line for line in accepted)
    assert out[-1].startswith("Orion 4.2.0: 3 accepted, 0 deferred, 0 rejected, 0 in doubt")
    assert len(server.messages) == 3
    (run,) = Ledger.open(tmp_path / "plan" / ".relcomm").runs()
    assert run.who and run.host and run.mode == "send"
    # Again: nothing more is sent.
    assert main(["send", str(plan_file), "--yes"]) == 0
    assert len(server.messages) == 3


def test_without_yes_and_without_a_terminal_it_refuses(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    assert main(["send", str(plan_file)]) == 2
    assert "needs --yes" in capsys.readouterr().err
    assert server.messages == []


def test_on_a_terminal_it_asks_for_the_version(tmp_path, server):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)

    def run_with_tty(answer: bytes) -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        process = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file)],
                                   stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        output = b""
        while b"to confirm" not in output:
            output += os.read(leader, 1024)
        os.write(leader, answer)
        while True:
            try:
                chunk = os.read(leader, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        return process.wait(timeout=30), output

    code, output = run_with_tty(b"4.1.0\n")
    assert code == 2 and b"not confirmed: nothing was sent" in output and server.messages == []
    code, output = run_with_tty(b"4.2.0\n")
    assert code == 0 and len(server.messages) == 2
    assert b"2/2 done" in output  # the progress line on a terminal


def test_a_rejected_delivery_exits_1(tmp_path, server, capsys):
    server.faults["customer1@example.com"] = PermFail()
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=3)
    assert main(["send", str(plan_file), "--yes"]) == 1
    out = capsys.readouterr().out
    assert "rejected  news  Customer 1 <customer1@example.com>  550 5.1.1 User unknown" in out


def test_plan_errors_exit_2_without_a_traceback(tmp_path, capsys):
    broken = tmp_path / "plan.toml"
    broken.write_text("format = 1\n[release\nname = 'x'\n")
    assert main(["send", str(broken), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "TOML syntax error" in err and "Traceback" not in err


def test_an_error_finding_refuses_the_send(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    text = plan_file.read_text().replace('version = "4.2.0"', 'version = "4.2.0"\ngate = "exit 3"')
    plan_file.write_text(text)
    assert main(["send", str(plan_file), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "not sending" in err and "gate" in err
    assert server.messages == []


def test_auth_failure_is_one_message_and_exit_2(tmp_path, monkeypatch, capsys):
    with FaultyMailServer(auth=("bot", "secret")) as server:
        monkeypatch.setenv("RELCOMM_TEST_SMTP", "nope")
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=20, username="bot",
                               password_env="RELCOMM_TEST_SMTP")
        assert main(["send", str(plan_file), "--yes"]) == 2
        captured = capsys.readouterr()
        assert captured.err.count("refused the login") == 1
        assert "20 not sent yet" in captured.out and "\nrejected " not in captured.out and "nope" not in captured.out + captured.err
        assert server.messages == []


def test_dry_run_and_status(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    assert main(["status", str(plan_file)]) == 0
    assert "nothing sent yet" in capsys.readouterr().out
    assert main(["send", str(plan_file), "--dry-run"]) == 0
    assert "dry run: 2 message(s) written to" in capsys.readouterr().out
    assert server.messages == []
    assert len(os.listdir(tmp_path / "plan" / ".relcomm" / "outbox" / "new")) == 2
    assert main(["send", str(plan_file), "--yes", "--state", str(tmp_path / "elsewhere")]) == 0
    capsys.readouterr()
    assert main(["status", str(plan_file), "--state", str(tmp_path / "elsewhere")]) == 0
    text = capsys.readouterr().out
    assert "accepted" in text and "Customer 1 <customer1@example.com>" in text and "2 accepted" in text
    assert main(["status", str(plan_file), "--json", "--state", str(tmp_path / "elsewhere")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"][L.ACCEPTED] == 2 and len(data["deliveries"]) == 2
    assert {d["state"] for d in data["deliveries"]} == {"accepted"}
    assert [r["mode"] for r in data["runs"]] == ["send"]


def test_test_send(tmp_path, server, capsys):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=2)
    assert main(["send", str(plan_file), "--test"]) == 0
    assert "test message sent to me@orion.example.com" in capsys.readouterr().out
    (message,) = server.messages
    assert message.rcpt_tos == ["me@orion.example.com"]
    assert Ledger.open(load(plan_file).state_dir).deliveries("4.2.0") == []


def test_password_from_stdin_is_used_and_never_printed(tmp_path, monkeypatch, capsys):
    import io

    with FaultyMailServer(auth=("bot", "s3cret-pw")) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=2, username="bot")
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pw\n"))
        assert main(["send", str(plan_file), "--yes", "--password-stdin"]) == 0
        captured = capsys.readouterr()
        assert len(server.messages) == 2 and "s3cret-pw" not in captured.out + captured.err
        # Without a password source and without a terminal: a plain refusal, exit 2.
        # (A fresh state folder: a send with nothing left to send needs no password.)
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        assert main(["send", str(plan_file), "--yes", "--state", str(tmp_path / "fresh")]) == 2
        assert "needs a password" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_cleanly_and_a_second_send_finishes_the_rest_once(tmp_path, server, sig):
    """The first Ctrl-C (or a SIGTERM from a deploy tool) lets the messages in flight get their replies
    recorded and says so; nothing is left "sending"; the next send sends the rest, each person once."""
    recipients = 12
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=recipients, rate="4/s", concurrency=1)
    process = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file), "--yes"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    first = process.stdout.readline()  # the first outcome: the send is under way
    assert first.startswith("accepted "), first
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert "stopping: waiting for the messages in flight (Ctrl-C again to stop at once)" in err
    assert "Traceback" not in err and process.returncode != 0
    with Ledger.open(tmp_path / "plan" / ".relcomm") as ledger:
        states = [d.state for d in ledger.deliveries("4.2.0") if d.communique_id == "news"]
    assert L.SENDING not in states and 0 < states.count(L.ACCEPTED) < recipients
    assert len(server.messages) == states.count(L.ACCEPTED)

    assert main(["send", str(plan_file), "--yes"]) == 0
    received = sorted(rcpt for message in server.messages for rcpt in message.rcpt_tos)
    assert received == sorted(f"customer{i}@example.com" for i in range(recipients))
