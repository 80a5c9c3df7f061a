"""Where a release page may be written: the path rule the checks and the publish channel share.

A page goes under the plan's folder (or an absolute path written as such in the plan), ends in
.html, never climbs out with `..` or through a symlink, never takes the folder's index name,
and never replaces a file relcomm did not write (one without its generator mark, or anything
but a regular file). It lives in compose, not in the channel, so validation can apply it
without importing a channel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.files import NotRegular, read_regular
from ..plan.locate import find_line
from . import RenderError, render_path
from .mime import CONTROL_CHARS

if TYPE_CHECKING:
    from ..plan.model import Communique, Plan


INDEX = "index.html"



GENERATOR = '<meta name="generator" content="relcomm">'  # relcomm wrote this file: it may replace it



HEAD_BYTES = 65536  # where a page's <title> and generator mark are looked for



def read_head(path: Path, limit: int = HEAD_BYTES) -> tuple[bytes, os.stat_result] | None:
    """The head of a regular file (see relcomm_tui.common.files); raises NotRegular otherwise."""
    return read_regular(path, limit)



class NotOurs(Exception):
    """A file relcomm would replace but did not write: nothing is written."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint



def not_ours(path: Path) -> NotOurs | None:
    """Why relcomm may not replace `path` (it exists and relcomm did not write it), or None."""
    what = "the folder's index" if path.name == INDEX else "a page"
    try:
        found = read_head(path)
    except NotRegular as error:
        return NotOurs(f"{path} is {error.kind}; relcomm replaces only files it wrote",
                       f"remove it or publish into another folder; relcomm then writes {what} there itself")
    except OSError as error:
        return NotOurs(f"cannot read {path} to check who wrote it: {error.strerror or error}",
                       "check the folder's permissions")
    if found is None or GENERATOR.encode() in found[0]:
        return None
    return NotOurs(f"{path} exists and relcomm did not write it (it has no <meta name=\"generator\" "
                   f"content=\"relcomm\">); it is not replaced",
                   f"if {what} may be replaced, move it away (or add that meta tag to it) and send again; "
                   "otherwise set `path` to another folder or file name")



def page_target(plan: "Plan", communique: "Communique") -> Path:
    """Where the page goes: the templated `path`, relative to the plan's folder. Raises RenderError.

    Refused (a RenderError of kind "path"): a `..` part; a relative path that leaves the plan's folder,
    also through a symlink; a path that a template value made absolute; a file that is not .html/.htm
    (so a page never overwrites the plan, a template or anything else). An absolute path written as
    such in the plan (`/srv/www/...`, `~/www/...`) is the plan's choice and is allowed.
    """
    return safe_target(plan, communique, render_path(plan, communique))



def safe_target(plan: "Plan", communique: "Communique", rendered: str) -> Path:
    index = plan.communiques.index(communique) if communique in plan.communiques else 0
    key = f"communiques[{index}].path"
    line = _path_line(plan, index)

    def refuse(why: str, hint: str) -> RenderError:
        return RenderError(f"{key} of {communique.id}: {why}", file=str(plan.path), line=line, hint=hint, kind="path")

    written = (communique.spec.path or "").strip()
    if not rendered or CONTROL_CHARS.search(rendered):
        raise refuse(f"the page path {rendered!r} is empty or holds a control character",
                     "write a file name such as www/releases/{{ release.version }}.html")
    if ".." in Path(rendered).parts or ".." in rendered.replace("\\", "/").split("/"):
        raise refuse(f"the page path {rendered!r} contains `..`",
                     "name the folder directly; a path in a plan may not climb out with ..")
    path = Path(rendered).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise refuse(f"the page path {rendered!r} does not end in .html",
                     "a release page is an .html file; this keeps a page from overwriting other files")
    if path.name.lower() == INDEX:
        raise refuse(f"the page path {rendered!r} names the folder's index, which relcomm writes itself",
                     "name the page after the release, e.g. www/releases/{{ release.version }}.html")
    if path.is_absolute():
        if not written.startswith(("/", "~")):
            raise refuse(f"a template value made the page path absolute ({rendered!r})",
                         "check the values the path uses (e.g. release.version); write an absolute path in the plan "
                         "if you mean one")
        target = path
    else:
        root = plan.root.resolve()
        target = root / path
        if not target.resolve().is_relative_to(root):
            raise refuse(f"the page path {rendered!r} leads out of the plan's folder (through a symlink)",
                         f"a relative path stays inside {root}; write an absolute path in the plan to publish elsewhere")
    for existing in (target, target.parent / INDEX):
        refused = not_ours(existing)
        if refused is not None:
            raise refuse(refused.message, refused.hint)
    return target



def _path_line(plan: "Plan", index: int) -> int | None:
    return find_line(plan.source, ("communiques", index, "path"))
