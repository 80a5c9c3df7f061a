"""The one function that hides secrets in a peer's words (relcomm_tui.common.secret_text): every form a
secret is sent or echoed in, and any 8+ character piece of one, becomes "(secret)"; nothing else
changes; it never raises."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from relcomm_tui.common.secret_text import HIDDEN, SecretHider, hide_secrets

PASSWORD = "Zq7~relcomm-LEAKCHECK-4f9e2b!K"
USER = "release-bot"
PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()


def _forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "clear": secret, "url-quoted": quote(secret, safe=""), "url-quoted-plus": quote_plus(secret),
        "html": html.escape(secret), "json": json.dumps(secret)[1:-1], "hex": raw.hex(),
        "base64": base64.b64encode(raw).decode(), "urlsafe base64": base64.urlsafe_b64encode(raw).decode(),
        "base64 after 1 byte": base64.b64encode(b"x" + raw).decode(),
        "base64 after 2 bytes": base64.b64encode(b"xy" + raw).decode(),
        "AUTH PLAIN": PLAIN if secret == PASSWORD else base64.b64encode(b"\0u\0" + raw).decode(),
        "upper-cased": secret.upper(), "escaped bytes": raw.decode("ascii", "backslashreplace"),
    }


def test_every_form_of_a_password_is_hidden():
    for secret in (PASSWORD, "pässwörd-ünïcode", 'quo"te<&>\'s p a c e', "correct horse battery staple"):
        for name, form in _forms(secret).items():
            shown = hide_secrets(f"535 5.7.8 failed: '{form}' try again", [secret])
            assert shown.startswith("535 5.7.8 failed: '") and shown.endswith("' try again"), (name, shown)
            assert secret not in shown and form not in shown, (secret, name, shown)


def test_a_piece_of_a_secret_is_hidden_too():
    # a server that cuts the echoed line short, or splits it over two reply lines
    for piece in (PLAIN[:40], PLAIN[20:], PASSWORD[5:17], PLAIN[len(PLAIN) // 2:]):
        shown = hide_secrets(f"535 {piece}", [PASSWORD, PLAIN])
        assert piece not in shown and HIDDEN in shown, (piece, shown)


def test_other_words_are_left_alone():
    text = "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
    assert hide_secrets(text, [PASSWORD, PLAIN]) == text
    assert hide_secrets(text, []) == text and hide_secrets("", [PASSWORD]) == ""
    assert hide_secrets("a 3-char secret abc stays", ["abc"]) == "a 3-char secret abc stays"  # too short to hide


def test_a_url_is_secret_in_its_path_and_query_only():
    url = "https://hooks.example.com/services/T0/B0/xoxLEAKhook7Qw9Zr2TkV4?token=qWeRtY123456789"
    shown = hide_secrets("Cannot POST /services/T0/B0/xoxLEAKhook7Qw9Zr2TkV4 at hooks.example.com; services ok", [url])
    assert "xoxLEAK" not in shown and "hooks.example.com" in shown and shown.endswith("services ok"), shown
    assert "qWeRtY" not in hide_secrets("token=qWeRtY123456789", [url])


def test_one_hider_serves_many_texts():
    hider = SecretHider([PASSWORD, None, ""])
    assert bool(hider) and not SecretHider([None, "ab"])
    assert hider.hide(f"x {PASSWORD} y") == f"x {HIDDEN} y"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), secrets=st.lists(st.text(max_size=40), max_size=3))
def test_never_raises_and_never_keeps_a_whole_secret(text: str, secrets: list[str]):
    shown = hide_secrets(text + "".join(secrets), secrets)
    for secret in secrets:
        if len(secret) >= 8:
            assert secret not in shown
