"""Load a plan from TOML, with one precise error when it cannot be loaded.

A `PlanError` names the file, the line and column where known, the key path
(`communiques[2].audience`) and a hint. Nothing here lets a traceback reach the user.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tomllib
import unicodedata
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import files, schema
from .errors import PlanError
from .explain import schema_error, toml_error
from .locate import find_line, keypath_text, shown
from .model import Communique, FileSnapshot, Location, Plan, Recipient, Release, StakeholderGroup

PLAN_NAMES = ("plan.toml", "relcomm.toml")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")  # as compose.mime: never in a header


def find_plan_file(path: Path) -> Path:
    """The plan file for a path the user gave: the file itself or plan.toml in a folder."""
    if not path.exists():
        raise PlanError("no such file", path, hint="check the path; a plan is a .toml file or a folder holding plan.toml")
    if path.is_dir():
        for name in PLAN_NAMES:
            if (path / name).is_file():
                return path / name
        raise PlanError(
            "this is a folder with no plan in it", path,
            hint=f"give the plan's .toml file, or put it in this folder as {' or '.join(PLAN_NAMES)}",
        )
    return path


def read_text(path: Path, *, what: str = "file", keypath: str = "", plan_file: Path | None = None,
              plan_source: str = "") -> str:
    """Read a UTF-8 text file, turning every failure into a PlanError that points at it."""
    return _decode(read_bytes(path, what=what, keypath=keypath, plan_file=plan_file, plan_source=plan_source), path)


def read_bytes(path: Path, *, what: str = "file", keypath: str = "", plan_file: Path | None = None,
               plan_source: str = "") -> bytes:
    """A file's bytes, every failure a PlanError that points at it (or at the key that names it)."""
    def referenced_from() -> tuple[Path, int | None, str]:
        if plan_file is None:
            return path, None, ""
        parts = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", keypath) if p)
        return plan_file, find_line(plan_source, parts), keypath

    if not path.exists():
        file, line, key = referenced_from()
        raise PlanError(f"{what} not found: {path}", file, line, None, key,
                        hint="paths in a plan are relative to the plan file's folder")
    if path.is_dir():
        file, line, key = referenced_from()
        raise PlanError(f"{what} is a folder, not a file: {path}", file, line, None, key, hint="name the file inside it")
    if not path.is_file():  # a FIFO or a device would block or never end
        file, line, key = referenced_from()
        raise PlanError(f"{what} is not a regular file: {path}", file, line, None, key, hint="name a text file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise PlanError(f"cannot read {what}: {error.strerror}", path, hint="check its permissions") from None


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise _not_utf8(path, line, column, data[error.start]) from None


def _not_utf8(path: Path, line: int, column: int, byte: int) -> PlanError:
    return PlanError(f"not UTF-8 text (byte 0x{byte:02x})", path, line, column,
                     hint="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def load_plan(path: str | Path) -> Plan:
    """Load and check the structure of a plan. Raises PlanError."""
    try:
        given = Path(path).expanduser()
    except RuntimeError:  # "~nobody/plan.toml": no such user
        raise PlanError("no such file", path, hint="check the path; `~user` names a user that does not exist") from None
    plan_file = find_plan_file(given).resolve()
    raw = read_bytes(plan_file, what="plan file")
    source = _decode(raw, plan_file)
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        raise toml_error(error, plan_file, source) from None
    except RecursionError:
        raise PlanError("TOML nests too deeply (arrays or inline tables inside each other thousands of times)",
                        plan_file, hint="a plan nests a few levels deep; check the brackets") from None
    _reject_literal_secrets(data, plan_file, source)
    try:
        table = schema.PlanFile.model_validate(data)
    except ValidationError as error:
        raise schema_error(error, plan_file, source) from None
    _check_channel_keys(data, table, plan_file, source)
    _check_unique_ids(table, plan_file, source)
    _check_commands(table, plan_file, source)
    return _build(table, plan_file, source, raw)


SECRET_KEYS = {("transport", "smtp", "password"), ("communiques", "*", "routing_key"), ("receipts", "sources", "*", "password")}


def _reject_literal_secrets(data: dict, file: Path, source: str) -> None:
    """A password written into the plan is an error: secrets are references only."""
    def walk(node: Any, parts: tuple) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*parts, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*parts, index))
        elif isinstance(node, str) and _is_secret_key(parts):
            raise PlanError(
                "a secret is written in the plan", file, find_line(source, parts), None, keypath_text(parts),
                hint=f'remove it and use a reference: {parts[-1]} = {{ env = "RELCOMM_SMTP_PASSWORD" }}, '
                     '{ keyring = "service:user" } or { command = "pass show smtp" }; then change the exposed secret',
            )
    walk(data, ())


def _is_secret_key(parts: tuple) -> bool:
    for pattern in SECRET_KEYS:
        if len(pattern) == len(parts) and all(p == "*" or p == q for p, q in zip(pattern, parts)):
            return True
    return False


def _check_channel_keys(data: dict, table: schema.PlanFile, file: Path, source: str) -> None:
    for index, (raw, communique) in enumerate(zip(data.get("communiques", []), table.communiques)):
        allowed = schema.COMMON_KEYS | schema.CHANNEL_KEYS[communique.channel]
        for key in raw:
            if key in allowed:
                continue
            owners = [name for name, keys in schema.CHANNEL_KEYS.items() if key in keys]
            parts = ("communiques", index, key)
            raise PlanError(
                f"`{key}` does not apply to a {communique.channel} communique", file, find_line(source, parts), None,
                keypath_text(parts),
                hint=(f"`{key}` is a setting of {' and '.join(owners)} communiques; remove it or change `channel`"
                      if owners else ""),
            )
        if communique.template and communique.body:
            parts = ("communiques", index, "body")
            raise PlanError("both `template` and `body` are given", file, find_line(source, parts), None,
                            keypath_text(parts), hint="keep one: a template file or an inline body")


def _check_unique_ids(table: schema.PlanFile, file: Path, source: str) -> None:
    for section, items in (("stakeholders", table.stakeholders), ("communiques", table.communiques)):
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.id in seen:
                parts = (section, index, "id")
                raise PlanError(
                    f"id {item.id!r} is used twice (also {section}[{seen[item.id]}])", file,
                    find_line(source, parts), None, keypath_text(parts), hint="give each one its own id",
                )
            seen[item.id] = index


_CONTROL_NAMES = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\x1b": "an escape"}


def unsafe_in_command(text: str) -> tuple[int, str] | None:
    """The first character that would make a command shown differ from the command run, or None.

    Every control character (C0 with tab, CR and LF; DEL; C1), every invisible format character
    (bidi overrides and isolates U+202A-202E, U+2066-2069, marks, zero-width ones), the line and
    paragraph separators, and any space but U+0020. A command is one line wherever it is shown; sh
    reads a line break as `;` and a tab as a space, so `&&`, a script, or a space says the same.
    """
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Zl", "Zp") or (category == "Zs" and char != " "):
            name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "a control character").lower()
            return index, f"U+{ord(char):04X} ({name})"
    return None


def _check_commands(table: schema.PlanFile, plan_file: Path, source: str) -> None:
    """Refuse a command holding a control or invisible character; tie each command secret to the plan folder.

    Walks the checked model, so every place a `{ command = ... }` may stand is found (the gate, the
    SMTP and IMAP passwords, webhook and pager secrets, headers), named by its key path.
    """
    def check(text: str, parts: tuple) -> None:
        found = unsafe_in_command(text)
        if found is None:
            return
        index, char = found
        raise PlanError(
            f"the command holds {char} at character {index + 1}: what is shown would not be what runs",
            plan_file, find_line(source, parts), None, keypath_text(parts),
            hint="write the command on one line with plain spaces; join steps with && or put them in a "
                 "script in the plan's folder (consent then covers the script's content)",
        )

    def walk(node: Any, parts: tuple) -> None:
        if isinstance(node, schema.CommandSecret):
            check(node.command, (*parts, "command"))
            node._folder = plan_file.parent
        elif isinstance(node, BaseModel):
            for name, field in type(node).model_fields.items():
                walk(getattr(node, name), (*parts, field.alias or name))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*parts, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, (BaseModel, dict, list)):
                    walk(value, (*parts, index))

    if table.release.gate:
        check(table.release.gate, ("release", "gate"))
    walk(table, ())


def _build(table: schema.PlanFile, plan_file: Path, source: str, raw: bytes) -> Plan:
    root = plan_file.parent
    snapshots: list[FileSnapshot] = [files.snapshot_plan_file(plan_file, raw)]

    def where(*parts: str | int) -> Location:
        return Location(plan_file, find_line(source, parts), None, keypath_text(parts))

    def read(name: str, what: str, *parts: str | int) -> FileSnapshot:
        # The one way a plan's file is read: checked, opened without following links, kept.
        path = inside_plan_folder(name, root, plan_file, source, parts)
        snapshot = files.read_file(root, path, written=name, what=what, keypath=keypath_text(parts))
        snapshots.append(snapshot)
        return snapshot

    groups = []
    for index, group in enumerate(table.stakeholders):
        members_file = None
        if isinstance(group.members, str):
            snapshot = read(group.members, "members file", "stakeholders", index, "members")
            members_file = snapshot.path
            members = _members_from_csv(_members_text(snapshot, plan_file, source), members_file, group.id)
        else:
            members = _inline_members(group.members, group.id, lambda i, index=index: where("stakeholders", index, "members", i))
        groups.append(StakeholderGroup(
            id=group.id, name=group.name or group.id, required=group.required, description=group.description,
            members=tuple(members), members_file=members_file, location=where("stakeholders", index),
            allow_special_domains=(group.allow_special_domains if isinstance(group.allow_special_domains, bool)
                                   else tuple(group.allow_special_domains)),
        ))

    communiques = []
    for index, spec in enumerate(table.communiques):
        # A template that cannot be read is not a load error: the checks report it (template-missing).
        template_file = read(spec.template, "template", "communiques", index, "template").path if spec.template else None
        communiques.append(Communique(
            id=spec.id, to=tuple(spec.to), channel=spec.channel, spec=spec, template_file=template_file,
            location=where("communiques", index),
        ))

    notes_file = read(table.release.notes, "release notes file", "release", "notes").path if table.release.notes else None
    release = Release(
        name=table.release.name, version=table.release.version, date=table.release.date, notes_file=notes_file,
        gate=table.release.gate, gate_timeout=table.release.gate_timeout, location=where("release"),
    )
    # The digest a review signs off covers every byte that can reach a message.
    digest = hashlib.sha256(source.encode())
    for snapshot in snapshots[1:]:
        digest.update(f"\0{snapshot.keypath}\0{snapshot.digest}\0{snapshot.problem}".encode())
    return Plan(
        path=plan_file, root=root, release=release, sender=table.sender, smtp=table.transport.smtp,
        receipts=table.receipts, groups=tuple(groups), communiques=tuple(communiques),
        digest=digest.hexdigest(), source=source, files=tuple(snapshots), channels=table.channels,
    )


def _members_text(snapshot: FileSnapshot, plan_file: Path, source: str) -> str:
    """A members file must be readable at load: its people are the plan's audience."""
    if snapshot.text is not None:
        return snapshot.text
    path, what = snapshot.path, snapshot.what
    line = find_line(source, tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", snapshot.keypath) if p))

    def at_key(message: str, hint: str) -> PlanError:
        return PlanError(message, plan_file, line, None, snapshot.keypath, hint=hint)

    if snapshot.problem == "missing":
        raise at_key(f"{what} not found: {path}", "paths in a plan are relative to the plan file's folder")
    if snapshot.problem == "folder":
        raise at_key(f"{what} is a folder, not a file: {path}", "name the file inside it")
    if snapshot.problem == "special":  # a FIFO or a device would block or never end
        raise at_key(f"{what} is not a regular file: {path}", "name a text file")
    if snapshot.problem == "too-large":
        raise at_key(f"{what} is too large ({snapshot.detail}): {path}", "name a members list, not another file")
    if snapshot.problem == "moved":
        raise at_key(f"{what} changed while it was read ({snapshot.detail}): {path}",
                     "check who else writes to the plan's folder, then load the plan again")
    if snapshot.problem == "encoding":
        line_no, column, byte = snapshot.detail.split(":")
        raise _not_utf8(path, int(line_no), int(column), int(byte, 16))
    raise PlanError(f"cannot read {what}: {snapshot.detail}", path, hint="check its permissions")


def inside_plan_folder(name: str, root: Path, plan_file: Path, source: str, parts: tuple) -> Path:
    """A file the plan reads and may send on (members, template, notes): it must be inside the plan's folder.

    Its content ends up in messages, so a plan (perhaps from a pull request) must not be able to make
    relcomm read ~/.ssh/id_rsa or /etc/passwd and mail it: no absolute path, no `~`, no `..` that climbs
    out, no symlink that points out (`files.resolve_inside`). Raises PlanError naming the key.
    """
    try:
        return files.resolve_inside(root, name)
    except files.OutsideFolder as refused:
        raise PlanError(f"{refused.reason}: {shown(name)}", plan_file, find_line(source, parts), None,
                        keypath_text(parts), hint=refused.hint) from None


def _inline_members(entries: list, group_id: str, where) -> list[Recipient]:
    members = []
    for index, entry in enumerate(entries):
        location = where(index)
        if isinstance(entry, str) and _CONTROL.search(entry):
            # parseaddr would quietly drop a line break ("Noor\r\nBcc: x <noor@...>"): keep the text as
            # written, so the checks report it here instead of sending to what is left.
            before, bracket, after = entry.rpartition("<")
            if bracket and after.rstrip().endswith(">"):
                members.append(Recipient(before.strip(), after.rstrip()[:-1].strip(), group_id, location))
            else:
                members.append(Recipient("" if "@" in entry else entry.strip(), entry.strip() if "@" in entry else None,
                                         group_id, location))
            continue
        if isinstance(entry, str):
            name, address = parseaddr(entry)
            if not address and "@" not in entry:
                # A bare name: someone reached by phone or in person.
                members.append(Recipient(entry.strip(), None, group_id, location))
                continue
            members.append(Recipient(name, address or entry.strip(), group_id, location))
        else:
            members.append(Recipient(entry.name, entry.email, group_id, location, phone=entry.phone, role=entry.role))
    return members


def _members_from_csv(text: str, path: Path, group_id: str) -> list[Recipient]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise PlanError("the members file is empty", path, 1, hint="its first line must be a header: name,email") from None
    except csv.Error as error:
        raise PlanError(f"bad CSV: {error}", path, 1, hint="check quoting") from None
    columns = [c.strip().lower() for c in header]
    missing = [c for c in ("name", "email") if c not in columns]
    if missing:
        raise PlanError(
            f"the header has no {' or '.join(repr(c) for c in missing)} column (it has: {', '.join(header) or 'nothing'})",
            path, 1, hint="the first line must name the columns, at least: name,email",
        )
    if len(set(columns)) != len(columns):
        raise PlanError("a column name appears twice in the header", path, 1, hint="give every column its own name")
    members = []
    next_start = reader.line_num + 1
    try:
        for row in reader:
            # A quoted value may span lines: a member's line is where its record starts.
            line, next_start = next_start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise PlanError(
                    f"this row has {len(row)} fields, the header has {len(columns)}", path, line,
                    hint="quote values that contain commas: \"Smith, Ada\"",
                )
            values = {column: cell.strip() for column, cell in zip(columns, row)}
            extra = {k: v for k, v in values.items() if k not in ("name", "email", "phone", "role")}
            members.append(Recipient(
                values["name"], values["email"] or None, group_id, Location(path, line),
                phone=values.get("phone") or None, role=values.get("role") or None, fields=extra,
            ))
    except csv.Error as error:
        raise PlanError(f"bad CSV: {error}", path, reader.line_num, hint="check the quotes on this line") from None
    return members
