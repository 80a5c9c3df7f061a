"""Is an email address usable, and is it at a special-use domain name?

email-validator refuses addresses under the special-use names of RFC 6761/6762/7686 (`.local`,
`.localhost`, `.test`, `.invalid`, `.onion`, `.arpa`): they are not on the Internet. Yet many
companies' internal mail lives at `corp.local`. A plan may allow them (`allow_special_domains`
under `[sender]` for the whole plan, or in a `[[stakeholders]]` table for its members): then such an
address is checked like any other and the checks warn, naming the domain, instead of refusing it.
`true` allows every special-use domain; a list (`["corp.local"]`) allows those and their subdomains,
so a typo such as `ada@acme.test` in a customer list is still caught.

The checks, a corrected address typed in the app and `relcomm send --resend-to` all ask here.
"""

from __future__ import annotations

from collections.abc import Sequence

from email_validator import EmailNotValidError, validate_email

# What email-validator refuses (its SPECIAL_USE_DOMAIN_NAMES), and why, in the user's words.
SPECIAL_USE = {
    "local": "multicast DNS, RFC 6762",
    "localhost": "this host, RFC 6761",
    "test": "testing, RFC 6761",
    "invalid": "never valid, RFC 6761",
    "onion": "Tor, RFC 7686",
    "arpa": "infrastructure, RFC 3172",
}

Allowance = bool | Sequence[str]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def special_suffix(address: str) -> str | None:
    """The special-use name an address's domain ends in ("local" for ada@corp.local), or None."""
    domain = domain_of(address)
    for name in SPECIAL_USE:
        if domain == name or domain.endswith("." + name):
            return name
    return None


def allows(allowance: Allowance | None, address: str) -> bool:
    """Does a plan's `allow_special_domains` value cover this address's domain?"""
    if allowance is True:
        return True
    if not allowance or isinstance(allowance, bool):
        return False
    domain = domain_of(address)
    for entry in allowance:
        wanted = entry.strip().strip(".").lower()
        if wanted and (domain == wanted or domain.endswith("." + wanted)):
            return True
    return False


def combine(*allowances: Allowance | None) -> Allowance:
    """One allowance covering what any of them covers (a group's list and the sender's `true`)."""
    if any(a is True for a in allowances):
        return True
    return tuple(entry for a in allowances if a and not isinstance(a, bool) for entry in a)


def address_problem(address: str, *, allow_special: bool = False) -> str | None:
    """Why `address` is not a usable email address (email-validator's words, no DNS), or None.

    With `allow_special`, a special-use domain is not itself a problem: the rest of the address is
    still checked (the special name is swapped for an ordinary one of the same length, so length
    limits hold as written).
    """
    suffix = special_suffix(address) if allow_special else None
    checked, everywhere = address, True
    if suffix is not None:
        local, _, domain = address.rpartition("@")
        domain = domain.rstrip(".")
        checked = f"{local}@{domain[: len(domain) - len(suffix)]}{'x' * len(suffix)}"
        everywhere = domain.lower() != suffix  # `user@localhost` has no dot: not a global name
    try:
        validate_email(checked, check_deliverability=False, globally_deliverable=everywhere)
    except EmailNotValidError as error:
        return str(error)
    return None


def special_problem(address: str) -> str:
    """The error for an address at a special-use domain that the plan does not allow."""
    suffix = special_suffix(address) or ""
    return (f"{domain_of(address)} is under .{suffix}, a special-use name ({SPECIAL_USE.get(suffix, 'reserved')}) "
            "that is not on the Internet")


SPECIAL_HINT = ('fix the address; or, if your own mail servers deliver to {domain}, add '
                'allow_special_domains = ["{domain}"] under [sender] or to this group')


def valid_address(text: str, *, allowance: Allowance | None = None) -> str | None:
    """The address, normalised, or None when it is not a usable email address. A special-use domain
    counts as usable only when `allowance` (the plan's setting for where it goes) covers it."""
    text = text.strip()
    if special_suffix(text) is not None:
        if not allows(allowance, text) or address_problem(text, allow_special=True):
            return None
        local, _, domain = text.rpartition("@")
        return f"{local}@{domain.rstrip('.').lower()}"
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return None
