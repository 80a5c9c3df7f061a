"""The checklist's findings box: every finding of the checks, errors first, each with its place in
the plan and its hint; or why the checks could not run. Enter on a finding is the screen's
(it knows where to jump: a group, the preview, or the file)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...checks.findings import Finding
from ...common.text import plural
from ...plan.model import Location
from ..text import visible
from .tables import ListOptions


def place(location: Location, root: Path) -> str:
    """A location relative to the plan folder: short, and the same on every machine."""
    try:
        file = location.file.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        file = Path(location.file.name)
    text = str(file)
    if location.line is not None:
        text += f":{location.line}"
    if location.keypath:
        text += f" {location.keypath}"
    return text


class FindingsBox(Vertical):
    """A bordered box whose title counts the findings; the list in it is `#findings`."""

    def compose(self) -> ComposeResult:
        yield ListOptions(id="findings")

    def show(self, findings: list[Finding] | None, checks_error: str | None, root: Path) -> bool:
        """List `findings` (None: still checking). True when findings are listed: the box's
        height follows them, so the screen fits it again."""
        options = self.query_one("#findings", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        if checks_error:
            self.border_title = "Findings: the checks could not run"
            options.add_option(Option(Content.assemble(("✗ ", "bold $error"), checks_error,
                                                        "\n  press r to try again"),
                                      id="checks-error", disabled=True))
            return False
        if findings is None:
            self.border_title = "Findings: checking…"
            return False
        errors = sum(f.severity == "error" for f in findings)
        warnings = len(findings) - errors
        self.border_title = f"Findings: {plural(errors, 'error')}, {plural(warnings, 'warning')}"
        if not findings:
            options.add_option(Option("No problems found.", id="clean", disabled=True))
            return False
        for index, finding in enumerate(findings):
            options.add_option(Option(finding_text(finding, root), id=f"finding-{index}"))
        options.highlighted = min(highlighted or 0, options.option_count - 1)
        return True


def finding_text(finding: Finding, root: Path) -> Content:
    error = finding.severity == "error"
    mark = ("✗ error  ", "bold $error") if error else ("! warning", "bold $warning")
    parts: list = [mark, " ", (visible(finding.id), "bold"), " ", visible(finding.message),
                   (f"\n  {visible(place(finding.location, root))}", "$text-muted")]
    if finding.hint:
        parts.append((f"\n  hint: {visible(finding.hint)}", "italic"))
    return Content.assemble(*parts)
