"""The loaded plan: the release, its stakeholder groups and the communiques that reach them.

Plain frozen dataclasses built by `loader.load_plan`; every layer above reads these.

A loaded plan is a snapshot: the files it uses (members CSV, templates, release notes) were read
once, at load, through `plan.files` (one containment check), and their text is kept here as a
`FileSnapshot`. Everything that renders (checks, preview, dry run, test send, the send) reads the
snapshot, never the disk again, so what was validated is what is sent; `plan.files.changes`
says when the disk no longer matches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.utils import formataddr
from pathlib import Path
from typing import Mapping

from .schema import ChannelsTable, CommuniqueTable, ReceiptsTable, SenderTable, SmtpTable


@dataclass(frozen=True)
class FileSnapshot:
    """One file a plan uses, as read at load: its text and digest, or why it could not be read."""

    path: Path          # inside the plan's folder, symlinks resolved
    written: str        # the name as the plan writes it (relative to the plan's folder)
    what: str           # in the user's words: "template", "members file", "release notes file", "plan file"
    keypath: str        # the plan key that names it: "communiques[0].template" ("" for the plan file)
    text: str | None    # UTF-8 text (a BOM dropped); None when it could not be read
    digest: str         # sha256 of the bytes read ("" when nothing was read)
    problem: str = ""   # why there is no text: "missing", "folder", "special", "unreadable", "encoding",
                        # "too-large", "moved" (a symlink appeared on the way while it was opened)
    detail: str = ""    # the OS's words, or where the bad byte is ("line:column:0xNN")
    identity: tuple[int, ...] = ()  # (device, inode, size, mtime ns, ctime ns) of what was read

    @property
    def name(self) -> str:
        """How to name it to the user: the path as written in the plan."""
        return self.written or self.path.name


@dataclass(frozen=True)
class Location:
    """Where something was written: a file, maybe a line and column, and the plan key path."""

    file: Path
    line: int | None = None
    column: int | None = None
    keypath: str = ""

    def __str__(self) -> str:
        text = str(self.file)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        if self.keypath:
            text += f" ({self.keypath})"
        return text


@dataclass(frozen=True)
class Recipient:
    """One person in a stakeholder group."""

    name: str
    email: str | None
    group_id: str
    location: Location
    phone: str | None = None
    role: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity within a communique: the address, case-folded, else the name."""
        return (self.email or f"name:{self.name}").strip().lower()

    @property
    def display(self) -> str:
        if self.email:
            return formataddr((self.name, self.email)) if self.name else self.email
        return self.name or "(unnamed)"

    def __getitem__(self, item: str) -> str:
        # Templates may use recipient.<csv column> for extra columns.
        return self.fields[item]

    def __getattr__(self, item: str) -> str:
        fields = self.__dict__.get("fields") or {}
        if item in fields:
            return fields[item]
        raise AttributeError(item)


@dataclass(frozen=True)
class StakeholderGroup:
    id: str
    name: str
    required: bool
    description: str | None
    members: tuple[Recipient, ...]
    members_file: Path | None
    location: Location
    allow_special_domains: bool | tuple[str, ...] = False  # see plan/addresses.py


@dataclass(frozen=True)
class Release:
    name: str
    version: str
    date: dt.date | None
    notes_file: Path | None
    gate: str | None
    gate_timeout: int
    location: Location


@dataclass(frozen=True)
class Communique:
    id: str
    to: tuple[str, ...]
    channel: str
    spec: CommuniqueTable
    template_file: Path | None
    location: Location

    @property
    def subject(self) -> str | None:
        return self.spec.subject

    @property
    def per_recipient(self) -> bool:
        """Email and manual steps go to each person; the other channels post once."""
        return self.channel in ("email", "manual")


@dataclass(frozen=True)
class Plan:
    path: Path
    root: Path
    release: Release
    sender: SenderTable
    smtp: SmtpTable
    receipts: ReceiptsTable
    groups: tuple[StakeholderGroup, ...]
    communiques: tuple[Communique, ...]
    digest: str  # of the plan file and every file snapshot: what a review signs off
    source: str  # the plan file's text, for locating findings
    files: tuple[FileSnapshot, ...] = ()  # the plan file first, then every file it uses, as read at load
    channels: ChannelsTable = field(default_factory=ChannelsTable)  # [channels.NAME]: pace of webhook, pager, publish
    # communique id -> compose.invitation.Stamp (UID, SEQUENCE, method) of its calendar invitation,
    # set only for a send (invitations.send.for_send); the preview and test sends have none.
    invitations: Mapping[str, object] = field(default_factory=dict, hash=False, compare=False)

    def group(self, group_id: str) -> StakeholderGroup | None:
        for group in self.groups:
            if group.id == group_id:
                return group
        return None

    def communique(self, communique_id: str) -> Communique | None:
        for communique in self.communiques:
            if communique.id == communique_id:
                return communique
        return None

    def audience(self, communique: Communique) -> list[tuple[StakeholderGroup, Recipient]]:
        """Everyone a communique reaches, once each, in plan order (first group wins)."""
        seen: set[str] = set()
        people: list[tuple[StakeholderGroup, Recipient]] = []
        for group_id in communique.to:
            group = self.group(group_id)
            if group is None:
                continue
            for member in group.members:
                if member.key in seen:
                    continue
                seen.add(member.key)
                people.append((group, member))
        return people

    def file(self, path: Path | None) -> FileSnapshot | None:
        """The snapshot of a file the plan uses (a communique's `template_file`, the notes file...)."""
        if path is None:
            return None
        for snapshot in self.files:
            if snapshot.path == path:
                return snapshot
        return None

    def communiques_for(self, group_id: str) -> list[Communique]:
        return [c for c in self.communiques if group_id in c.to]

    @property
    def state_dir(self) -> Path:
        """Default folder for the ledger and review state, beside the plan."""
        return self.root / ".relcomm"
