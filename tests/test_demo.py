"""`relcomm demo --headless`: the whole journey against the embedded servers, in a subprocess."""

import subprocess
import sys


def test_demo_sends_everything_and_collects_receipts(tmp_path):
    folder = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "relcomm_tui.commands.main", "demo", "--headless", "--dir", str(folder)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    # The sample is a script (issue 14): followed in order with time compressed, said so, to the end.
    assert "time compressed 300x" in out and "Script: script done: 6 of 6 steps" in out
    assert out.index("step heads-up       done") < out.index("step customers      done")
    assert "demo: releasing the checkpoint of support-ready" in out
    # The two bouncing demo customers come back bounced with their reasons...
    assert "bounced: 5.1.1" in out and "bounced: 5.2.2" in out
    # ...everyone else's mail was reached, and some read receipts confirm it.
    assert "confirmed" in out
    # The send's summary hides nothing (issue 13). The demo follows the sample's script and plays the
    # engineer, ticking the two manual steps (the executives' calls) as `relcomm confirm` would; the
    # presentation is an email with a calendar invitation (issue 14), and the executives' answers come back.
    assert "Sent: 40 accepted, 0 deferred, 0 rejected, 0 in doubt, 2 marked delivered" in out
    assert "calendar invitations (each person's latest answer)" in out
    assert "exec-presentation: 2 invited" in out
    assert "0 did not" in out  # every report the demo server wrote matched a delivery
    # The plan and its ledger live in the demo folder, so it can be reopened later.
    assert (folder / "plan.toml").is_file() and (folder / ".relcomm" / "ledger.sqlite").is_file()
    # The release page was published into the plan's folder.
    assert (folder / ".relcomm" / "www" / "releases" / "4.2.0.html").is_file()
    assert (folder / ".relcomm" / "www" / "releases" / "index.html").is_file()


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "something").write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "relcomm_tui.commands.main", "demo", "--headless", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "not empty" in done.stderr and "Traceback" not in done.stderr
