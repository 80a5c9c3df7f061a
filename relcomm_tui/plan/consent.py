"""Consent for the commands a plan would run on this host: the release gate and password commands.

A plan written by someone else must not run a command on the deploy host just because it was
opened. Like direnv's `allow`: the first time a plan's commands are seen, the engineer is shown
them and asked. Consent covers what runs, not only what is written:

- the plan's folder (commands run there: the same text elsewhere is other code),
- each command's text,
- the SHA-256 of every file the command names (`named_files`): every word of the command that
  leads to an existing file, relative to the plan's folder (or absolute and inside it), the
  program above all. A `git pull` that changes `scripts/ok.sh` therefore asks again, and so does
  a folder deleted and recreated with other scripts in it.

Rules:
- Two layers. The record on disk (`allowed/<digest>` under the user config folder, JSON, 0600 in
  a 0700 folder) is written by `relcomm allow PLAN` or the app's dialog. The grant in this process
  (`grant`) holds, per folder and command, the files as they were when consent was given.
- A command runs only if `may_run(folder, command)` says so at the moment it would run: it looks
  at the named files again and compares them with the grant. Callers hash, then start the process
  at once; nothing else happens in between. The default is refusal.
- What the engineer was shown is what is recorded: a `Review` is taken once, shown, and that same
  snapshot is allowed; a file that changes while the question is on screen asks again.

Not covered (docs/security.md says so): files a script reads or runs by itself, words that only
the shell expands (`$VAR`, `~`, `cd dir && ./x`), programs found on PATH or named by an absolute
path outside the plan's folder, and the content of a FIFO or device a command names.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import itertools
import json
import os
import shlex
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..common.config import config_dir
from ..common.files import atomic_write
from .locate import keypath_text
from .model import Plan
from .references import secret_uses
from .schema import CommandSecret

ALLOWED_DIR = "allowed"
ALLOW_HINT = "review them with `relcomm allow PLAN` (it prints them and records your consent), or pass --allow-commands"
HASH_LIMIT = 8 << 20  # bytes of one named file hashed by content; a bigger one is recorded by its inode and times
RECORD_LIMIT = 1 << 20  # a consent record is a few hundred bytes; never read a huge file found there

_SHELL_PUNCTUATION = "();<>|&"
_NESTING = 3  # `sh -c '...'` inside `bash -c "..."`: deep enough for real commands, bounded for hostile ones


@dataclass(frozen=True, order=True)
class FileSeen:
    """One file a command names, as it was when looked at."""

    name: str    # as the command writes it: "scripts/ok.sh"
    kind: str    # "file", "folder", "other" (a FIFO, device or socket: never read) or "unreadable"
    path: str    # where it leads, symlinks followed
    sha256: str  # of the content; of the listing for a folder; "" when it cannot be read


@dataclass(frozen=True)
class PlanCommand:
    what: str     # in the user's words: "release gate", "SMTP password"
    keypath: str  # where the plan names it: "release.gate"
    command: str
    files: tuple[FileSeen, ...] = ()


@dataclass(frozen=True)
class Review:
    """A plan's commands and the files they name, looked at once: what is shown and what is allowed."""

    plan: Path
    root: Path
    commands: tuple[PlanCommand, ...]

    @property
    def digest(self) -> str:
        """What the record is named by: the folder, each distinct command and the files it names."""
        hasher = hashlib.sha256()
        hasher.update(b"relcomm consent 2\0" + str(self.root).encode())
        for command, files in sorted({(c.command, c.files) for c in self.commands}):
            hasher.update(b"\0command\0" + command.encode())
            for seen in files:
                hasher.update("\0{}\0{}\0{}\0{}".format(seen.name, seen.kind, seen.path, seen.sha256).encode())
        return hasher.hexdigest()


# Per (plan folder, command text): the files it named when consent was given in this process.
_granted: dict[tuple[str, str], tuple[FileSeen, ...]] = {}


# -- what a command names ----------------------------------------------------------------------


def _words(command: str, depth: int = 0) -> list[str]:
    """The words of a command as sh would split them, quotes removed, operators dropped.

    The word after an output redirection (`> gate.log`) is left out: the command writes that file,
    so its content is output, not code, and would otherwise ask again after every run. A word that
    itself holds a command (`sh -c 'scripts/a.sh; scripts/b.sh'`, `$(...)`, backquotes) is split too.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: it will not run as written; still look at what it names
        tokens = command.split()
    words: list[str] = []
    output_next = False
    for token in tokens:
        if token and all(c in _SHELL_PUNCTUATION for c in token):
            output_next = ">" in token and "<" not in token  # `3<>file` is also read: it counts
            continue
        if output_next:
            output_next = False
            continue
        words.append(token)
        if depth < _NESTING and any(c.isspace() or c in _SHELL_PUNCTUATION or c == "`" for c in token):
            words += _words(token.replace("`", " "), depth + 1)
    return words


def _candidates(root: Path, command: str) -> list[str]:
    """Every word (or `--opt=VALUE` value, or glob match) that may name a file, in order, once each."""
    found: dict[str, None] = {}
    for word in _words(command):
        for candidate in (word, word.partition("=")[2]) if "=" in word else (word,):
            if not candidate or "\0" in candidate:
                continue
            if any(c in candidate for c in "*?[") and not os.path.isabs(candidate):
                for match in sorted(itertools.islice(glob.iglob(candidate, root_dir=root), 1000)):
                    found.setdefault(match, None)
            found.setdefault(candidate, None)
    return list(found)


def named_files(root: Path, command: str) -> tuple[FileSeen, ...]:
    """The files (and folders) `command` names, run from the plan folder `root`, as they are now.

    A relative word counts wherever it leads (it moves with the plan, even `../tools/x.sh`); an
    absolute one only inside the plan's folder (`/usr/bin/python3` is the host's, not the plan's).
    """
    seen: list[FileSeen] = []
    for name in _candidates(root, command):
        if os.path.isabs(name) and not Path(os.path.normpath(name)).is_relative_to(root):
            continue
        look = _look(root, name)
        if look is not None:
            seen.append(look)
    return tuple(seen)


def _look(root: Path, name: str) -> FileSeen | None:
    path = os.path.join(root, name)  # an absolute name replaces root
    try:
        info = os.stat(path)  # follow symlinks: what runs is what the link leads to
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) or error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            return None  # a plain word ("show", "smtp", a long argument), not a file
        return FileSeen(name, "unreadable", path, "")  # a symlink loop, a folder we may not enter
    real = os.path.realpath(path)
    if stat.S_ISREG(info.st_mode):
        digest = _file_digest(path)
        return FileSeen(name, "file", real, digest) if digest else FileSeen(name, "unreadable", real, "")
    if stat.S_ISDIR(info.st_mode):
        return FileSeen(name, "folder", real, _folder_digest(Path(real), root))
    return FileSeen(name, "other", real, "")


def _file_digest(path: str) -> str:
    """SHA-256 of a regular file's content, or "" when it cannot be read (or is not a regular file now).

    A file over HASH_LIMIT (a data file, not a script; or `../../../var/log/huge.log` named by a
    hostile plan to stall the app) is recorded by what the kernel says of it instead: device, inode,
    size, modification and change time ("stat:..."). Any write changes the change time, which a
    user cannot set back. Deterministic per file, so the same file gives the same record each time.
    """
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat must not hang the app
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        if info.st_size <= HASH_LIMIT:
            hasher, total = hashlib.sha256(), 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > HASH_LIMIT:  # grew while read, or a /proc file that says it is empty
                    break
                hasher.update(chunk)
            else:
                return hasher.hexdigest()
        return (f"stat:{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _folder_digest(folder: Path, root: Path) -> str:
    """A folder named by a command (`run-parts hooks`): its entries one level deep and their content.

    The plan's folder itself and the folders above it are not listed: they hold the plan, its state
    and whatever a run writes, which would ask again after every run.
    """
    if root.is_relative_to(folder):
        return ""
    hasher = hashlib.sha256()
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return "unreadable"
    for entry in entries:
        path = os.path.join(folder, entry.name)
        try:
            kind = "link:" + os.readlink(path) if entry.is_symlink() else ""
            info = os.stat(path)
        except OSError:
            hasher.update(f"\0{entry.name}\0{kind}\0missing".encode(errors="surrogateescape"))
            continue
        content = _file_digest(path) if stat.S_ISREG(info.st_mode) else f"mode {stat.S_IFMT(info.st_mode):o}"
        hasher.update(f"\0{entry.name}\0{kind}\0{content}".encode(errors="surrogateescape"))
    return hasher.hexdigest()


# -- a plan's commands ---------------------------------------------------------------------------


def _command_texts(plan: Plan) -> list[tuple[str, str, str]]:
    """(what, keypath, command) for every command the plan names, in plan order; no file is read."""
    found: list[tuple[str, str, str]] = []
    if plan.release.gate:
        found.append(("release gate", "release.gate", plan.release.gate))
    found += [(use.what, keypath_text(use.parts), use.ref.command)
              for use in secret_uses(plan) if isinstance(use.ref, CommandSecret)]
    return found


def plan_commands(plan: Plan) -> list[PlanCommand]:
    """Every command the plan could make relcomm run, in plan order, with the files it names now."""
    looked: dict[str, tuple[FileSeen, ...]] = {}
    commands = []
    for what, keypath, command in _command_texts(plan):
        if command not in looked:
            looked[command] = named_files(plan.root, command)
        commands.append(PlanCommand(what, keypath, command, looked[command]))
    return commands


def review(plan: Plan) -> Review:
    """Look at the plan's commands and the files they name, once."""
    return Review(plan.path, plan.root, tuple(plan_commands(plan)))


def digest(plan: Plan | Review) -> str:
    return (plan if isinstance(plan, Review) else review(plan)).digest


def _records() -> Path:
    return config_dir() / ALLOWED_DIR


def needs_consent(plan: Plan | Review) -> bool:
    """True when the plan names commands and consent for exactly these (and their files) is not recorded."""
    seen = plan if isinstance(plan, Review) else review(plan)
    return bool(seen.commands) and not (_records() / seen.digest).is_file()


def allow(plan: Plan | Review) -> Path:
    """Record consent for what the review saw (taken now for a Plan) and grant it in this process."""
    seen = plan if isinstance(plan, Review) else review(plan)
    path = _records() / seen.digest
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    record = {
        "plan": str(seen.plan), "folder": str(seen.root),
        "allowed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commands": [{"keypath": c.keypath, "command": c.command,
                      "files": [{"name": f.name, "kind": f.kind, "path": f.path, "sha256": f.sha256} for f in c.files]}
                     for c in seen.commands],
    }
    # Temp file and rename: a crash never leaves half a record, and a link planted at `path` is replaced, not followed.
    atomic_write(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"), 0o600)
    grant(seen)
    return path


def _read_record(path: Path) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            data = file.read(RECORD_LIMIT)
    except OSError:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        # A record written before consent covered files: "plan PATH" on its first line.
        first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
        return {"plan": first[5:]} if first.startswith("plan ") else None
    return record if isinstance(record, dict) else None


def _records_for(seen: Review) -> list[tuple[Path, dict]]:
    """Every record kept for this plan's folder (or, written before, for this plan file)."""
    try:
        paths = [p for p in _records().iterdir() if len(p.name) == 64]
    except OSError:
        return []
    found = []
    for path in paths:
        record = _read_record(path)
        if record is not None and (record.get("folder") == str(seen.root) or record.get("plan") == str(seen.plan)):
            found.append((path, record))
    return found


def revoke(plan: Plan | Review) -> bool:
    """Forget every consent recorded for the plan's folder, and in this process; True if there was one."""
    seen = plan if isinstance(plan, Review) else review(plan)
    for key in [key for key in _granted if key[0] == str(seen.root)]:
        del _granted[key]
    forgotten = False
    for path, _ in _records_for(seen):
        try:
            path.unlink()
            forgotten = True
        except FileNotFoundError:
            pass
    return forgotten


def changed_since_allowed(seen: Review) -> list[str]:
    """What differs from the latest consent recorded for this folder, in the user's words ([] if none)."""
    records = [(path, record) for path, record in _records_for(seen) if "commands" in record]
    if not records:
        return []
    _, latest = max(records, key=lambda item: str(item[1].get("allowed_at", "")))
    before: dict[str, dict[str, tuple]] = {}
    for command in latest.get("commands", []):
        if isinstance(command, dict):
            before[str(command.get("command"))] = {
                str(f.get("name")): (f.get("kind"), f.get("path"), f.get("sha256"))
                for f in command.get("files", []) if isinstance(f, dict)}
    changes: list[str] = []
    for command in seen.commands:
        if command.command not in before:
            changes.append(f"{command.keypath}: a new command")
            continue
        old = before[command.command]
        for file in command.files:
            if file.name not in old:
                changes.append(f"{file.name}: new since you allowed")
            elif old[file.name] != (file.kind, file.path, file.sha256):
                changes.append(f"{file.name}: changed since you allowed")
        changes += [f"{name}: gone since you allowed" for name in old if name not in {f.name for f in command.files}]
    return list(dict.fromkeys(changes))


# -- the grant in this process -----------------------------------------------------------------


def grant(plan: Plan | Review) -> None:
    """Let this process run the plan's commands as reviewed (after consent, or --allow-commands)."""
    seen = plan if isinstance(plan, Review) else review(plan)
    for command in seen.commands:
        _granted[(str(seen.root), command.command)] = command.files


def apply(plan: Plan, *, allow_commands: bool = False) -> bool:
    """Grant the plan's commands if consent is recorded or given on the command line.

    True when every command the plan names may run. The files are looked at once, so what is
    granted is exactly what the record was found for.
    """
    seen = review(plan)
    if allow_commands or not needs_consent(seen):
        grant(seen)
        return True
    return False


def may_run(root: Path, command: str) -> bool:
    """True when `command`, run from the plan folder `root`, was granted and the files it names are
    still what they were then. Call it immediately before starting the command."""
    files = _granted.get((str(root), command))
    return files is not None and named_files(root, command) == files


def all_granted(plan: Plan) -> bool:
    """True when every command the plan names may run in this process, as its files are now."""
    return all(may_run(plan.root, c.command) for c in plan_commands(plan))


def has_grant(plan: Plan) -> bool:
    """True when every command the plan names was granted in this process, whatever its files are now.

    Cheap (reads no file): for deciding what to offer on screen, never for deciding what runs.
    """
    return all((str(plan.root), command) in _granted for _, _, command in _command_texts(plan))


def covers(file: FileSeen) -> str:
    """One named file as shown before asking: what consent records of it."""
    if file.kind == "file" and file.sha256.startswith("stat:"):
        return f"covers {file.name} (over {HASH_LIMIT >> 20} MiB: by size and change time, not content)"
    detail = {"file": f"sha256 {file.sha256[:16]}", "folder": "a folder: the files directly in it",
              "other": "not a regular file: its content is not covered",
              "unreadable": "cannot be read"}[file.kind]
    return f"covers {file.name} ({detail})"


def describe(plan: Plan | Review) -> str:
    """The commands as shown before asking: what, where, the whole text, and the files consent covers."""
    seen = plan if isinstance(plan, Review) else review(plan)
    lines = []
    for command in seen.commands:
        lines.append(f"  {command.what} ({command.keypath}):")
        lines.append(f"    {command.command}")
        lines += [f"      {covers(file)}" for file in command.files]
    return "\n".join(lines)
