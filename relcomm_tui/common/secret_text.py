"""Hiding secrets in what a server sends back: one function for every channel.

A careless or hostile server echoes what it was sent: an SMTP server answers
`535 5.7.8 'AUTH PLAIN AHJlbGVhc2UtYm90AGh1bnRlcjI='`, an HTTP receiver's default 404 says
`Cannot POST /services/T0/B0/<token>`, an IMAP server repeats the LOGIN line. Those words become
the reply relcomm keeps in the ledger and shows on screen, so every text that came from a peer
goes through `hide_secrets` with the secrets that peer was given, before it is kept or shown.

Rules:
* Every form a secret travels in or could be echoed in is hidden: as written, URL-quoted
  (`%`-escapes, `+` for space), HTML-escaped, JSON-escaped, as escaped bytes (`\\xc3\\xa4`), hex,
  and base64 (standard and URL-safe) at each of the three alignments it can have inside a
  longer base64 text, which covers the AUTH PLAIN token (`\\0user\\0password`), the AUTH LOGIN
  token and the password encoded alone. Matching ignores case (an upper-cased echo still leaks).
* A piece of a secret is a secret too: any run of `FRAGMENT` (8) or more characters of one of
  those forms is hidden (a server that cuts the echoed line short, or splits it over a
  multi-line reply, still leaks what it kept). A URL is a secret only in its path and query
  (the host is shown elsewhere on purpose), and only its long words count as pieces, so that
  `services` or `hooks` in an answer stay readable.
* Each hidden run becomes `(secret)`. Secrets shorter than 4 characters are not hidden (they
  would garble every reply; no real credential is that short).
* Never raises, for any text and any secrets.

Pure and dependency-free (stdlib only), so the SMTP client, the HTTP channels and the receipts
sources share it. Tests: tests/test_secret_text.py, and the leak campaign
(tests/test_secrets_leak.py, tests/test_secrets_leak_channels.py).
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Iterable
from urllib.parse import quote, quote_plus, urlsplit

HIDDEN = "(secret)"
MIN_SECRET = 4
FRAGMENT = 8
LONG_WORD = 12  # a word of a URL this long is a token, not a path name
# Scanning for fragments costs a slice per character; a body past this is only searched for whole forms
# (what relcomm keeps of an answer is an excerpt of a few hundred characters anyway).
FRAGMENT_SCAN_LIMIT = 1 << 20

_URL_WORDS = re.compile(r"[/?&=#\s:,;]+")


def _is_url(secret: str) -> bool:
    parts = urlsplit(secret)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _base64_cores(raw: bytes) -> set[str]:
    """base64 of `raw` as it appears inside any longer base64 text: for each alignment, the
    characters that depend on `raw` alone; plus `raw` encoded on its own (with its padding)."""
    cores: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        cores.add(encode(raw).decode("ascii"))
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw).decode("ascii")
            # the first 4 characters mix in the shift's zero bytes; the last 4 the padding
            core = encoded[4 if shift else 0:len(encoded) - 4]
            if core:
                cores.add(core)
    return cores


def secret_forms(secret: str) -> tuple[set[str], set[str]]:
    """(whole forms, forms whose pieces count too) of one secret."""
    whole: set[str] = set()
    pieces: set[str] = set()
    if len(secret) < MIN_SECRET:
        return whole, pieces
    if _is_url(secret):
        parts = urlsplit(secret)
        private = f"{parts.path}?{parts.query}" if parts.query else parts.path
        whole.add(secret)
        if len(private.strip("/")) >= MIN_SECRET:
            whole.add(private)
        words = {w for w in _URL_WORDS.split(private) if len(w) >= LONG_WORD}
        texts = words
    else:
        texts = {secret}
    for text in texts:
        raw = text.encode("utf-8", "surrogatepass")
        forms = {text, quote(text, safe=""), quote(text), quote_plus(text), html.escape(text),
                 html.escape(text, quote=False), json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
                 raw.decode("ascii", "backslashreplace"), raw.hex()}
        forms |= _base64_cores(raw)
        pieces |= forms
    whole |= {quote(w, safe="") for w in whole} | {quote(w) for w in whole}
    whole |= pieces
    return {w for w in whole if len(w) >= MIN_SECRET}, {p for p in pieces if len(p) >= FRAGMENT}


class SecretHider:
    """The forms of a set of secrets, prepared once; `hide(text)` as `hide_secrets` does."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        whole: set[str] = set()
        pieces: set[str] = set()
        for secret in secrets:
            if secret:
                w, p = secret_forms(str(secret))
                whole |= w
                pieces |= p
        ordered = sorted(whole, key=len, reverse=True)  # the longest form first: no half-hidden token
        self._whole = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None
        self._grams = {piece.lower()[i:i + FRAGMENT] for piece in pieces
                       for i in range(len(piece) - FRAGMENT + 1)}

    def __bool__(self) -> bool:
        return self._whole is not None

    def hide(self, text: str) -> str:
        if not text or self._whole is None:
            return text or ""
        text = self._whole.sub(HIDDEN, text)
        if self._grams and len(text) <= FRAGMENT_SCAN_LIMIT:
            text = self._hide_fragments(text)
        return text

    def _hide_fragments(self, text: str) -> str:
        lowered = text.lower()
        if len(lowered) != len(text):  # a character whose lower case is longer: match as written
            lowered = text
        grams = self._grams
        spans: list[list[int]] = []
        for i in range(len(lowered) - FRAGMENT + 1):
            if lowered[i:i + FRAGMENT] in grams:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + FRAGMENT
                else:
                    spans.append([i, i + FRAGMENT])
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(HIDDEN)
            last = end
        out.append(text[last:])
        return "".join(out)


def hide_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every form of every secret in `secrets` (and any 8+ character piece of one)
    replaced by "(secret)". For many texts and the same secrets, build a `SecretHider` once."""
    return SecretHider(secrets).hide(text)
