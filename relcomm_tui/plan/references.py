"""Where a plan holds secret references: pure over the plan model, read by consent and the checks.

Its own module so that consent (which must know which commands a plan runs) and secrets
(which must ask consent before running one) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .schema import CommandSecret, EnvSecret, KeyringSecret, SecretRef

if TYPE_CHECKING:
    from .model import Plan


def is_reference(value: object) -> bool:
    return isinstance(value, (KeyringSecret, EnvSecret, CommandSecret))


@dataclass(frozen=True)
class SecretUse:
    """One place a plan holds a secret reference."""

    ref: SecretRef
    what: str                      # in the user's words: "SMTP password", "url of eng-chat"
    parts: tuple[str | int, ...]   # where the plan says it, for a Location
    communique: str | None = None


def secret_uses(plan: "Plan") -> list[SecretUse]:
    """Every secret reference in the plan, in plan order (for the checks and for consent)."""
    uses: list[SecretUse] = []
    if is_reference(plan.smtp.password):
        uses.append(SecretUse(plan.smtp.password, "SMTP password", ("transport", "smtp", "password")))
    for index, source in enumerate(plan.receipts.sources):
        password = getattr(source, "password", None)
        if is_reference(password):
            uses.append(SecretUse(password, "IMAP password", ("receipts", "sources", index)))
    for index, communique in enumerate(plan.communiques):
        spec = communique.spec
        for key in ("url", "routing_key", "put_url"):
            value = getattr(spec, key)
            if is_reference(value):
                uses.append(SecretUse(value, f"{key} of {communique.id}", ("communiques", index, key), communique.id))
        for name, value in spec.headers.items():
            if is_reference(value):
                uses.append(SecretUse(value, f"header {name} of {communique.id}", ("communiques", index, "headers"),
                                      communique.id))
    return uses
