"""A keyring backend that lives in memory, for tests: no OS keyring runs here.

In-process: `keyring.set_keyring(MemoryKeyring({("service", "user"): "secret"}))`.
In a subprocess: PYTHON_KEYRING_BACKEND=memory_keyring.MemoryKeyring with this folder on
PYTHONPATH; the backend starts with what RELCOMM_TEST_KEYRING_FILE (a JSON object
{"service": {"user": "secret"}}) holds, the way an OS keyring already holds the user's secrets.
"""

from __future__ import annotations

import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]  # only used when chosen explicitly

    def __init__(self, entries: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = dict(entries or {})
        seed = os.environ.get("RELCOMM_TEST_KEYRING_FILE")
        if seed and not entries:
            with open(seed, encoding="utf-8") as file:
                for service, users in json.load(file).items():
                    for user, secret in users.items():
                        self.entries[service, user] = secret

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[service, username] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(f"nothing stored for {service}/{username}")
