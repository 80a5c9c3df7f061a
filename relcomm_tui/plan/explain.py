"""How a plan that does not load is explained: a TOML syntax error or a schema violation turned
into one located message with a hint (the line, the key path, "did you mean", the type expected).

Kept apart from the loader so the loading rules read on their own; every explanation names the
place and how to fix it, never a traceback.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import dates, schema
from .errors import PlanError
from .locate import close_match, find_line, keypath_text, shown

# Words people reach for, mapped to the key the format uses.
SYNONYMS = {
    "audience": "to", "recipients": "to", "groups": "to", "targets": "to", "target": "to",
    "type": "channel", "kind": "channel", "medium": "channel", "via": "channel",
    "title": "subject", "topic": "subject",
    "text": "body", "content": "body", "message": "body",
    "file": "template", "template_file": "template",
    "webhook": "url", "endpoint": "url", "link": "url",
    "sender": "from", "from_address": "from", "return_path": "receipts_to", "bounce_to": "receipts_to",
    "server": "host", "hostname": "host", "user": "username", "login": "username",
    "pass": "password", "secret": "password", "tls": "security", "ssl": "security",
    "stakeholder": "stakeholders", "communique": "communiques", "messages": "communiques",
    "emails": "members", "people": "members", "list": "members",
    "mandatory": "required", "must": "required",
    # [communiques.invitation]
    "when": "start", "begins": "start", "starts": "start", "at": "start", "length": "duration", "minutes": "duration",
    "timezone": "time_zone", "tz": "time_zone", "zone": "time_zone", "place": "location", "room": "location",
    "where": "location", "meeting_url": "url", "join_url": "url", "summary": "title", "name": "title",
    "calendar": "invitation", "invite": "invitation", "meeting": "invitation", "event": "invitation",
}


def toml_error(error: tomllib.TOMLDecodeError, file: Path, source: str = "") -> PlanError:
    text = str(error)
    found = re.search(r"\(at line (\d+), column (\d+)\)", text)
    line = int(found.group(1)) if found else None
    column = int(found.group(2)) if found else None
    bad_date = _bad_toml_date(source, line)
    if bad_date is not None:
        key, problem, at_column, keypath = bad_date
        return PlanError(problem, file, line, at_column, keypath,
                         hint=f"write a real day as YYYY-MM-DD without quotes: {key} = {dates.EXAMPLE}")
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", text) or "invalid TOML"
    hint = "check quotes, brackets and `key = value` syntax on that line"
    if "Invalid value" in message or "Expected '=' after a key" in message:
        hint = 'text values need quotes: key = "value"'
    elif "Cannot overwrite" in message or "Cannot declare" in message:
        hint = "a key or table is defined twice; use [[...]] for a list of tables"
    return PlanError(f"TOML syntax error: {message[0].lower() + message[1:]}", file, line, column, hint=hint)


def _bad_toml_date(source: str, line: int | None) -> tuple[str, str, int, str] | None:
    """`date = 2026-13-03` is a date that does not exist; tomllib only says "expected newline"."""
    lines = source.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return None
    found = dates.toml_date_problem(lines[line - 1])
    if found is None:
        return None
    key, problem, column = found
    table = next((m.group(1).strip() for m in map(_TABLE_LINE.match, reversed(lines[: line - 1])) if m), "")
    return key, problem, column, f"{table}.{key}" if table else key


_TABLE_LINE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]")


def schema_error(error: ValidationError, file: Path, source: str) -> PlanError:
    problems = error.errors(include_url=False)
    first = _most_useful(problems)
    parts = _clean_loc(first["loc"])
    line = find_line(source, parts)
    kind = first["type"]
    keypath = keypath_text(parts)
    hint = ""
    if kind == "extra_forbidden":
        key = str(parts[-1])
        message = f"unknown key `{key if len(key) <= 80 else key[:76] + '...'}`"
        hint = _did_you_mean(key, _allowed_keys(parts[:-1]))
    elif kind == "missing":
        message = f"required key `{parts[-1]}` is missing"
        hint = f"add `{parts[-1]} = ...`; see docs/plan-format.md"
        line = find_line(source, parts[:-1]) or line
    elif kind in ("literal_error", "enum"):
        expected = first.get("ctx", {}).get("expected", "")
        message = f"{shown(first['input'])} is not allowed here"
        hint = f"use one of {expected}" if expected else ""
        if parts and parts[-1] == "channel":
            given = str(first["input"]).lower()
            if given in ("slack", "teams", "mattermost", "googlechat", "chat"):
                hint = f'chat posts use channel = "webhook" with preset = "{given}"'
            elif given in ("pagerduty", "ntfy", "beeper"):
                hint = 'use channel = "pager"'
            elif given in ("phone", "call", "presentation", "meeting"):
                hint = 'use channel = "manual" with instructions = "..."'
            else:
                close = close_match(given, schema.CHANNELS)
                hint = f'did you mean "{close}"?' if close else f"use one of {expected}"
    elif kind == "value_error":
        message = str(first.get("ctx", {}).get("error") or first["msg"])  # our own words, without "Value error, "
        hint = _type_hint(parts, kind)
    else:
        message = first["msg"][0].lower() + first["msg"][1:]
        given = first.get("input")
        if kind.endswith("_type") and not isinstance(given, (dict, list)):
            message = f"{message}, got {shown(given)}"
        hint = _type_hint(parts, kind)
    # A misnamed key also shows up as the missing one; count it once.
    others = {
        tuple(_clean_loc(p["loc"])) for p in problems
        if not (kind == "extra_forbidden" and p["type"] == "missing" and tuple(_clean_loc(p["loc"]))[:-1] == parts[:-1])
    }
    more = len(others - {parts})
    if more > 0:
        hint = (hint + "; " if hint else "") + f"{more} more problem{'s' if more > 1 else ''} after this one"
    return PlanError(message, file, line, None, keypath, hint)


def _most_useful(problems: list[dict]) -> dict:
    # Unions report one failure per alternative; an unknown key or a missing key says the most.
    for wanted in ("extra_forbidden", "missing", "literal_error"):
        for problem in problems:
            if problem["type"] == wanted:
                return problem
    return problems[0]


MODEL_NAMES = {
    "KeyringSecret", "EnvSecret", "CommandSecret", "MaildirSourceTable", "MboxSourceTable",
    "ImapSourceTable", "MemberTable", "str", "bool", "list[union[str,MemberTable]]",
}


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts the union member's name into the path; the user never wrote it.
    return tuple(p for p in loc if not (isinstance(p, str) and (p in MODEL_NAMES or p.startswith(("list[", "function-", "union[")))))


def _allowed_keys(parts: tuple) -> set[str]:
    model: Any = schema.PlanFile
    for part in parts:
        if isinstance(part, int) or model is None:
            continue
        model = _submodel(model, str(part))
    if model is None:
        return set()
    return {f.alias or name for name, f in model.model_fields.items()}


def _submodel(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    for name, field in model.model_fields.items():
        if (field.alias or name) != key:
            continue
        for candidate in _models_in(field.annotation):
            return candidate
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


def _did_you_mean(key: str, allowed: set[str]) -> str:
    if not allowed:
        return ""
    synonym = SYNONYMS.get(key.lower())
    if synonym in allowed:
        return f"did you mean `{synonym}`?"
    close = close_match(key, sorted(allowed))
    if close:
        return f"did you mean `{close}`?"
    return "allowed keys here: " + ", ".join(sorted(allowed))


def _type_hint(parts: tuple, kind: str) -> str:
    last = str(parts[-1]) if parts else ""
    if last == "members":
        return 'members is a CSV file name or a list like ["Ada <ada@example.com>"]'
    if last == "to":
        return 'to is a list of stakeholder group ids, e.g. to = ["customers"]'
    if last == "date":
        return f"write the day as YYYY-MM-DD without quotes: date = {dates.EXAMPLE}"
    if last == "allow_special_domains":
        return 'write true, or a list of domains such as ["corp.local"]'
    if last == "rate":
        return 'write a rate like "120/min" or "5/s"'
    if last == "duration":
        return 'write a duration like "45m", "1h" or "1h30m"'
    if last == "start":
        return "write a TOML date-time without quotes: start = 2026-12-04T16:00:00 (with time_zone), or 2026-12-04T15:00:00Z"
    if kind in ("int_type", "int_parsing"):
        return "write a whole number without quotes"
    if kind == "bool_type":
        return "write true or false without quotes"
    if kind == "string_type":
        return 'write text in quotes: "..."'
    return "see docs/plan-format.md"
