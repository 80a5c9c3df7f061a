"""Hostile paths (issue 6): a plan naming files outside its folder. Members CSV, template and
release notes (their content is sent) must be inside the plan's folder: `..`, absolute, `~` and
symlinks that point out are load errors naming the key. A publish `path` may be absolute when the
plan writes it so, but `..`, a relative path leaving the folder (also through a symlink), a path a
template value made absolute, and a non-.html file are `path-unsafe` findings, and the publish
channel writes nothing. The plan format has no attachments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import campaign
import pytest
from http_receiver import IntentLog, job_for
from plan_helpers import FILES, base_plan, write_plan

from relcomm_tui.channels.publish import PublishChannel
from relcomm_tui.transport.http import HttpTimeouts
from relcomm_tui.checks.rules import run_checks
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.loader import PlanError
from relcomm_tui.plan.locate import find_line
from relcomm_tui.plan.schema import PlanFile

CANARY = "CANARY-91c2-outside-the-plan"
ROOT = Path(__file__).resolve().parent.parent

# key -> (where in the plan dict, the file it normally names, that file's content)
KEYS = {
    "stakeholders[0].members": (("stakeholders", 0, "members"), "customers.csv", FILES["customers.csv"]),
    "communiques[0].template": (("communiques", 0, "template"), "announce.md.j2", FILES["announce.md.j2"]),
    "release.notes": (("release", "notes"), "CHANGELOG.md", FILES["CHANGELOG.md"]),
}


def outside(tmp: Path) -> Path:
    """A folder beside the plan's, holding a file of each kind with a canary in it."""
    folder = tmp / "outside"
    folder.mkdir(parents=True, exist_ok=True)
    for _, name, content in KEYS.values():
        (folder / name).write_text(content.replace("Acme", CANARY).replace("2.0.0 - ", f"2.0.0 {CANARY} - ")
                                   .replace("Hello", CANARY), encoding="utf-8")
    return folder


def escapes(tmp: Path, name: str) -> dict[str, tuple[str, callable]]:
    """label -> (value written in the plan, prepare(plan folder))."""
    out = outside(tmp)
    home = Path(os.path.expanduser("~"))

    def link(target: Path, at: str):
        def prepare(folder: Path) -> None:
            (folder / at).parent.mkdir(parents=True, exist_ok=True)
            (folder / at).symlink_to(target)
        return prepare

    none = lambda folder: None  # noqa: E731
    return {
        "../": (f"../outside/{name}", none),
        "sub/../../": (f"sub/../../outside/{name}", lambda folder: (folder / "sub").mkdir(exist_ok=True)),
        "absolute": (str(out / name), none),
        "absolute /etc/passwd": ("/etc/passwd", none),
        "~": (f"~/{name}", none),
        "~ of the home folder's parent": (f"~/../{home.name}/{name}", none),
        "symlink to a file outside": (f"linked-{name}", link(out / name, f"linked-{name}")),
        "symlinked folder pointing outside": (f"shared/{name}", link(out, "shared")),
        "symlink to /etc/passwd": ("passwd", link(Path("/etc/passwd"), "passwd")),
        "NUL in the name": (f"{name}\x00.txt", none),
    }


def set_key(data: dict, where: tuple, value) -> None:
    node = data
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value


@pytest.mark.campaign
def test_files_whose_content_is_sent_must_stay_in_the_plan_folder(tmp_path: Path) -> None:
    failures, tried = [], 0
    for keypath, (where, name, _) in KEYS.items():
        for label, (value, prepare) in escapes(tmp_path, name).items():
            tried += 1
            folder = tmp_path / f"case{tried}"
            data = base_plan()
            set_key(data, where, value)
            plan_file = write_plan(folder, data)
            prepare(folder)
            try:
                load_plan(plan_file)
            except PlanError as error:
                line = find_line(plan_file.read_text(encoding="utf-8"), where)
                text = str(error)
                if error.location.keypath != keypath or error.location.line != line or not error.hint:
                    failures.append(f"{keypath} / {label}: not located at {keypath} (line {line}): {text}")
                elif CANARY in text or "root:" in text:
                    failures.append(f"{keypath} / {label}: the error shows the outside file's content")
                continue
            failures.append(f"{keypath} / {label}: loaded")
    campaign.record("input", "paths: members, template, notes outside the plan", tried=tried,
                    held=tried - len(failures))
    assert failures == []


def test_files_inside_the_folder_still_load_also_through_an_inside_symlink(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"][0]["members"] = "lists/./customers.csv"
    data["communiques"][0]["template"] = "templates/../templates/announce.md.j2"  # climbs, but stays inside
    data["release"]["notes"] = "notes-link.md"
    files = {"lists/customers.csv": FILES["customers.csv"], "templates/announce.md.j2": FILES["announce.md.j2"]}
    plan_file = write_plan(tmp_path, data, files)
    (tmp_path / "notes-link.md").symlink_to(tmp_path / "CHANGELOG.md")
    with pytest.raises(PlanError) as refused:
        load_plan(plan_file)  # `..` is refused even when it would land inside: the rule is simple to state
    assert refused.value.location.keypath == "communiques[0].template"
    data["communiques"][0]["template"] = "templates/announce.md.j2"
    plan = load_plan(write_plan(tmp_path, data, files))
    assert plan.group("customers").members[0].name == "Ada Lovelace"
    assert not [f for f in run_checks(plan, gate=False, secrets=False) if f.id.startswith(("template", "notes"))]


def test_a_fifo_as_members_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"][0]["members"] = "pipe.csv"
    plan_file = write_plan(tmp_path, data)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(PlanError) as refused:
        load_plan(plan_file)
    assert "not a regular file" in refused.value.message and refused.value.location.keypath == "stakeholders[0].members"


def test_validate_cli_names_the_key_without_a_traceback(tmp_path: Path) -> None:
    outside(tmp_path)
    data = base_plan()
    data["stakeholders"][0]["members"] = "../outside/customers.csv"
    plan_file = write_plan(tmp_path / "plan", data)
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "validate", str(plan_file)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "stakeholders[0].members" in done.stderr and "hint:" in done.stderr
    assert CANARY not in done.stdout + done.stderr


# -- publish ---------------------------------------------------------------------------------------

FAST = HttpTimeouts(connect=0.5, total=1)


def publish_plan(folder: Path, path: str, version: str = "2.0.0") -> Path:
    data = base_plan()
    data["release"]["version"] = version
    del data["release"]["notes"]
    data["communiques"].append({"id": "page", "to": ["ops"], "channel": "publish", "subject": "Vega {{ release.version }}",
                                "path": path, "body": "# Vega\n\nNew things.\n"})
    return write_plan(folder, data)


def publish_escapes(tmp: Path) -> dict[str, tuple[str, str, callable]]:
    """label -> (path written, release version, prepare(plan folder))."""
    out = tmp / "outside-www"
    out.mkdir(exist_ok=True)
    none = lambda folder: None  # noqa: E731

    def link(at: str, target: Path):
        return lambda folder: (folder / at).symlink_to(target)

    return {
        "..": ("../outside-www/page.html", "2.0.0", none),
        "absolute with ..": (f"{out}/../outside-www/page.html", "2.0.0", none),
        "version climbs out": ("www/{{ release.version }}.html", "../../outside-www/x", none),
        "version makes it absolute": ("{{ release.version }}.html", f"{out}/evil", none),
        "symlinked folder": ("www/{{ release.version }}.html", "2.0.0", link("www", out)),
        "not .html: the plan itself": ("plan.toml", "2.0.0", none),
        "not .html: a template": ("{{ release.version }}", "announce.md.j2", none),
        "not .html: a dot file": ("www/.bashrc", "2.0.0", none),
        "NUL in the version": ("www/{{ release.version }}.html", "2.0.0\x00", none),
        "line break in the version": ("www/{{ release.version }}.html", "2.0.0\n../../x", none),
    }


def snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file() and not p.is_symlink()}


async def deliver(plan_file: Path):
    plan = load_plan(plan_file)
    channel = PublishChannel(plan, timeouts=FAST)
    await channel.open()
    try:
        return await channel.deliver(job_for(plan, "page"), IntentLog().intent())
    finally:
        await channel.close()


@pytest.mark.campaign
async def test_publish_targets_outside_where_the_plan_allows_are_refused_and_not_written(tmp_path: Path) -> None:
    failures, tried = [], 0
    for label, (path, version, prepare) in publish_escapes(tmp_path).items():
        tried += 1
        folder = tmp_path / f"case{tried}"
        try:
            plan_file = publish_plan(folder, path, version)
        except ValueError as error:  # tomli_w refuses to write it: not a plan anyone can have
            failures.append(f"{label}: cannot write the plan: {error}")
            continue
        prepare(folder)
        before = snapshot(tmp_path)
        plan = load_plan(plan_file)
        found = [f for f in run_checks(plan, gate=False, secrets=False) if f.id == "path-unsafe"]
        line = find_line(plan.source, ("communiques", 2, "path"))
        outcome = await deliver(plan_file)
        after = snapshot(tmp_path)
        if len(found) != 1 or found[0].location.line != line or "communiques[2].path" not in found[0].message \
                or not found[0].hint:
            failures.append(f"{label}: finding {[(f.id, str(f.location), f.message) for f in found]}")
        elif outcome.state != "rejected" or "communiques[2].path" not in outcome.detail:
            failures.append(f"{label}: delivery {outcome}")
        elif after != before:
            failures.append(f"{label}: files changed: {sorted(set(after) ^ set(before))}")
    campaign.record("input", "paths: publish targets", tried=tried, held=tried - len(failures))
    assert failures == []


async def test_publish_inside_the_folder_and_to_an_absolute_path_written_in_the_plan_still_works(tmp_path: Path) -> None:
    inside = publish_plan(tmp_path / "a", "www/{{ release.version }}.html")
    outcome = await deliver(inside)
    assert outcome.state == "accepted", outcome
    assert (tmp_path / "a" / "www" / "2.0.0.html").is_file()
    site = tmp_path / "srv" / "www"
    site.mkdir(parents=True)
    absolute = publish_plan(tmp_path / "b", f"{site}/{{{{ release.version }}}}.html")
    assert not [f for f in run_checks(load_plan(absolute), gate=False, secrets=False) if f.id == "path-unsafe"]
    outcome = await deliver(absolute)
    assert outcome.state == "accepted", outcome
    assert (site / "2.0.0.html").is_file() and (site / "index.html").is_file()


def test_the_plan_format_has_no_attachments() -> None:
    """If attachments are added, they need the same rule as members/template/notes: this test is the reminder."""
    keys = set(PlanFile.model_json_schema(by_alias=True)["$defs"]["CommuniqueTable"]["properties"])
    assert not {k for k in keys if "attach" in k or k in ("files", "include")}


@pytest.mark.campaign
async def test_fifos_devices_and_symlinks_in_the_publish_folder_are_skipped_never_opened(tmp_path: Path) -> None:
    """The index scan reads only regular files: a FIFO named *.html (which blocks whoever opens it),
    a symlink to /dev/stdin, /dev/zero or a secret outside, and a device node are left out of the
    index without being opened, and the publish finishes."""
    import asyncio
    import stat as stat_

    from relcomm_tui.channels.publish import INDEX

    plan_file = publish_plan(tmp_path / "plan", "www/{{ release.version }}.html")
    www = tmp_path / "plan" / "www"
    www.mkdir()
    secret = tmp_path / "secret.html"
    secret.write_text(f"<title>{CANARY}</title>")
    os.mkfifo(www / "fifo.html")
    (www / "stdin.html").symlink_to("/dev/stdin")
    (www / "zero.html").symlink_to("/dev/zero")
    (www / "outside.html").symlink_to(secret)
    (www / "dangling.html").symlink_to(tmp_path / "nowhere.html")
    (www / "folder.html").mkdir()
    odd = ["fifo.html", "stdin.html", "zero.html", "outside.html", "dangling.html", "folder.html"]
    try:
        os.mknod(www / "null.html", stat_.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
        odd.append("null.html")
    except (PermissionError, OSError):
        pass  # not root: the symlinks to devices stand for it
    (www / "1.0.0.html").write_text("<title>Vega 1.0.0</title>")
    try:
        outcome = await asyncio.wait_for(deliver(plan_file), 60)
    finally:
        # unblock a reader stuck on the FIFO (the code before the fix), so the test ends either way
        try:
            os.close(os.open(www / "fifo.html", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert outcome.state == "accepted", outcome
    index = (www / INDEX).read_text()
    assert "Vega 2.0.0" in index and "Vega 1.0.0" in index
    for name in odd:
        assert name not in index, name
    assert CANARY not in index
    assert stat_.S_ISFIFO(os.lstat(www / "fifo.html").st_mode)  # left as it was
    campaign.record("input", "paths: FIFOs, devices, symlinks in the publish folder", tried=len(odd),
                    held=sum(name not in index for name in odd))


# -- read once, through one check (issue 10, item 4) ----------------------------------------------


def test_a_symlink_swapped_in_after_the_check_is_refused_not_followed(tmp_path: Path) -> None:
    """The race the snapshot closes: the name is checked (resolved inside the folder), then an
    attacker swaps the file, or a folder on the way, for a symlink out before it is opened.
    `read_file` opens what was checked without following links, so it reads nothing from outside."""
    from relcomm_tui.plan.files import read_file, resolve_inside

    out = outside(tmp_path)
    folder = tmp_path / "plan"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "announce.md.j2").write_text(FILES["announce.md.j2"], encoding="utf-8")
    checked = resolve_inside(folder, "templates/announce.md.j2")

    def read():
        return read_file(folder, checked, written="templates/announce.md.j2", what="template",
                         keypath="communiques[0].template")

    assert read().text == FILES["announce.md.j2"]
    # The file itself becomes a symlink to a file outside.
    (folder / "templates" / "announce.md.j2").unlink()
    (folder / "templates" / "announce.md.j2").symlink_to(out / "announce.md.j2")
    swapped = read()
    assert swapped.text is None and swapped.problem == "moved" and swapped.digest == ""
    # A folder on the way becomes a symlink to a folder outside (holding a file of the same name).
    (folder / "templates").rename(folder / "templates.old")
    (folder / "templates").symlink_to(out)
    (out / "templates.md.j2").write_text(CANARY, encoding="utf-8")
    swapped = read()
    assert swapped.text is None and swapped.problem == "moved"
    # A FIFO in its place is never opened for a blocking read.
    (folder / "templates").unlink()
    (folder / "templates.old").rename(folder / "templates")
    (folder / "templates" / "announce.md.j2").unlink()
    os.mkfifo(folder / "templates" / "announce.md.j2")
    assert read().problem == "special"


def test_a_template_or_notes_that_is_a_fifo_or_a_folder_is_a_finding_not_a_hang(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["template"] = "pipe.md.j2"
    data["release"]["notes"] = "notes-dir"
    plan_file = write_plan(tmp_path, data)
    os.mkfifo(tmp_path / "pipe.md.j2")
    (tmp_path / "notes-dir").mkdir()
    plan = load_plan(plan_file)
    findings = {f.id: f for f in run_checks(plan, gate=False, secrets=False)}
    assert "not a regular file" in findings["template-missing"].message
    assert "folder" in findings["notes-missing"].message
