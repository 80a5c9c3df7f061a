"""Parser tests run in strict mode: an unexpected exception inside the report parser fails the
test instead of being turned into an "unparseable message" report (what users get).

Import ``strict_parsing`` into a test module (``from parse_strict import strict_parsing``): it is
autouse, so every test of that module runs with ``RELCOMM_PARSE_STRICT=1``; subprocesses inherit it.
"""

from __future__ import annotations

import pytest

from relcomm_tui.receipts import parse


@pytest.fixture(autouse=True)
def strict_parsing(monkeypatch):
    monkeypatch.setenv(parse.STRICT_ENV, "1")
    assert parse.strict()
    yield
