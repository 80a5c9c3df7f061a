"""The preview: each communique exactly as it will be sent, for one chosen recipient, kept live.

The plan file and every file it reads (templates, member lists, release notes) are polled twice a
second; a change reloads the plan and re-renders within a second, keeping the selected communique,
recipient and scroll position. Render errors and plan load errors show in place of the preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Markdown, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ...compose import RenderError, Rendered, render
from ...plan import Plan, PlanError, load_plan
from ...plan.model import Communique, Recipient, StakeholderGroup
from ...plan.secrets import describe, is_reference
from ..text import plain_lines, visible, visible_lines

POLL_SECONDS = 0.5
HEADER_ORDER = ("From", "To", "Subject", "Reply-To", "Date", "Message-ID")
# Set by the send engine for each delivery, so the preview cannot know them yet.
SET_WHEN_SENT = {"Date": "(stamped when sent)", "Message-ID": "(assigned when sent)"}


@dataclass(frozen=True)
class Target:
    """Who the preview renders for: one person (email, manual) or the group a post goes to."""

    group: StakeholderGroup | None
    recipient: Recipient | None

    @property
    def key(self) -> str:
        return self.recipient.key if self.recipient else f"group:{self.group.id if self.group else ''}"


def targets_for(plan: Plan, communique: Communique) -> list[Target]:
    if communique.per_recipient:
        return [Target(group, recipient) for group, recipient in plan.audience(communique)]
    return [Target(plan.group(communique.to[0]) if communique.to else None, None)]


def watched_files(plan: Plan) -> list[Path]:
    files = [plan.path]
    files += [c.template_file for c in plan.communiques if c.template_file]
    files += [g.members_file for g in plan.groups if g.members_file]
    if plan.release.notes_file:
        files.append(plan.release.notes_file)
    return files


def file_state(files: list[Path]) -> dict[Path, tuple[int, int] | None]:
    state: dict[Path, tuple[int, int] | None] = {}
    for file in files:
        try:
            info = file.stat()
            state[file] = (info.st_mtime_ns, info.st_size)
        except OSError:
            state[file] = None  # a deleted file is a change too; loading will say what is wrong
    return state


class PreviewScreen(Screen):
    """Every communique, rendered for a chosen recipient, re-rendered when files change."""

    CSS_PATH = "preview.tcss"
    HELP_TITLE = "Preview"
    AUTO_FOCUS = "#communiques"
    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back to the checklist"),
        Binding("n,right_square_bracket", "next_recipient", "Next", id="next-recipient",
                tooltip="Render for the next recipient"),
        Binding("N,left_square_bracket", "previous_recipient", "Prev", id="previous-recipient",
                tooltip="Render for the previous recipient"),
        Binding("m", "toggle_raw", "Raw MIME", id="raw", tooltip="Show the raw message as sent, or the readable view"),
        Binding("r", "reload", "Reload", id="reload-preview", tooltip="Load the plan again and re-render now"),
    ]

    class RenderDone(Message):
        def __init__(self, token: tuple, rendered: Rendered | None, error: RenderError | None) -> None:
            super().__init__()
            self.token, self.rendered, self.error = token, rendered, error

    class PlanLoaded(Message):
        def __init__(self, result: Plan | PlanError) -> None:
            super().__init__()
            self.result = result

    def __init__(self, communique_id: str | None = None, group_id: str | None = None) -> None:
        super().__init__()
        self.communique_id = communique_id
        self.target_key: str | None = self.first_target_in(communique_id, group_id)
        self.raw = False
        self.generation = 0  # bumped on every file change so late renders of old text are dropped
        self.rendered: Rendered | None = None
        self.render_error: RenderError | None = None
        self.load_error: PlanError | None = None
        self._files: dict[Path, tuple[int, int] | None] = {}
        self._token: tuple | None = None
        self._shown_markdown: str | None = None

    @property
    def plan(self) -> Plan:
        return self.app.plan

    def compose(self) -> ComposeResult:
        with Horizontal():
            communiques = OptionList(id="communiques")
            communiques.border_title = "Communiques"
            yield communiques
            with Vertical(id="message"):
                yield Static(id="plan-error")
                yield Static(id="target")
                with VerticalScroll(id="preview"):
                    yield Static(id="render-error")
                    yield Static(id="headers")
                    yield Markdown(id="text-part")
                    yield Static(id="raw", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#preview").border_title = "Preview"
        self.query_one("#plan-error").display = False
        self.query_one("#render-error").display = False
        self.query_one("#raw").display = False
        self.fill_communiques()
        self._files = file_state(watched_files(self.plan))
        self.set_interval(POLL_SECONDS, self.check_files, name="live-preview")

    # -- the communique list ----------------------------------------------------------------

    def fill_communiques(self) -> None:
        options = self.query_one("#communiques", OptionList)
        options.clear_options()
        for communique in self.plan.communiques:
            reach = targets_for(self.plan, communique)
            count = (f"{len(reach)} {'person' if len(reach) == 1 else 'people'}" if communique.per_recipient
                     else "one post")
            meta = (f"\n  {visible(communique.channel)} · {count}", "$text-muted")
            options.add_option(Option(Content.assemble(visible(communique.id), meta),
                                      id=communique.id))
        ids = [c.id for c in self.plan.communiques]
        if self.communique_id not in ids:
            self.communique_id = ids[0] if ids else None
        if self.communique_id:
            options.highlighted = ids.index(self.communique_id)
        self.rerender()

    @on(OptionList.OptionHighlighted, "#communiques")
    def communique_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.communique_id:
            self.communique_id = event.option.id
            self.target_key = None
            self.query_one("#preview", VerticalScroll).scroll_home(animate=False)
            self.rerender()

    def select_communique(self, communique_id: str, group_id: str | None = None) -> None:
        ids = [c.id for c in self.plan.communiques]
        if communique_id in ids:
            self.communique_id = communique_id  # set first, so the highlight event keeps the chosen recipient
            self.query_one("#communiques", OptionList).highlighted = ids.index(communique_id)
            self.target_key = self.first_target_in(communique_id, group_id)
            self.rerender()

    def first_target_in(self, communique_id: str | None, group_id: str | None) -> str | None:
        communique = self.plan.communique(communique_id or "")
        if communique is None or group_id is None:
            return None
        for target in targets_for(self.plan, communique):
            if target.group is not None and target.group.id == group_id:
                return target.key
        return None

    # -- recipients -------------------------------------------------------------------------

    def current(self) -> tuple[Communique | None, list[Target], int]:
        communique = self.plan.communique(self.communique_id or "")
        if communique is None:
            return None, [], 0
        targets = targets_for(self.plan, communique)
        keys = [t.key for t in targets]
        index = keys.index(self.target_key) if self.target_key in keys else 0
        return communique, targets, index

    def step_recipient(self, step: int) -> None:
        communique, targets, index = self.current()
        if communique is None or len(targets) < 2:
            self.notify("This communique has only one recipient view.", timeout=2)
            return
        self.target_key = targets[(index + step) % len(targets)].key
        self.rerender()

    def action_next_recipient(self) -> None:
        self.step_recipient(+1)

    def action_previous_recipient(self) -> None:
        self.step_recipient(-1)

    # -- rendering --------------------------------------------------------------------------

    def rerender(self) -> None:
        communique, targets, index = self.current()
        target_line = self.query_one("#target", Static)
        if communique is None:
            target_line.update("No communique selected.")
            return
        if not targets:
            target_line.update(Content.styled("Nobody: the groups this communique goes to have no members.", "bold $error"))
            self.show_error(RenderError("This communique reaches nobody.", hint="add members to its groups or fix `to`"))
            return
        target = targets[index]
        self.target_key = target.key
        if target.recipient is not None:
            person = target.recipient.name or target.recipient.email or "(unnamed)"
            who = Content.assemble(("Recipient ", "$text-muted"), (f"{index + 1}/{len(targets)}: ", "bold"),
                                   visible(person),
                                   (f" · {visible(target.group.name if target.group else '')}", "$text-muted"))
        else:
            groups = ", ".join(communique.to)
            who = Content.assemble((f"{visible(communique.channel)}: ", "bold"), f"posted once, for {visible(groups)}")
        target_line.update(who)
        self._token = (communique.id, target.key, self.plan.digest, self.generation)
        self.render_worker(self.plan, communique, target, self._token)

    @work(thread=True, exclusive=True, exit_on_error=False, group="render")
    def render_worker(self, plan: Plan, communique: Communique, target: Target, token: tuple) -> None:
        try:
            rendered = render(plan, communique, target.group, target.recipient)
        except RenderError as error:
            self.post_message(self.RenderDone(token, None, error))
            return
        self.post_message(self.RenderDone(token, rendered, None))

    async def on_preview_screen_render_done(self, message: RenderDone) -> None:
        if message.token != self._token:
            return  # the user moved on, or a file changed, while this was rendering
        if message.error is not None:
            self.show_error(message.error)
        elif message.rendered is not None:
            await self.show_rendered(message.rendered)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "render":
            self.show_error(RenderError(f"The preview failed: {type(error).__name__}: {error}",
                                        hint="this is a bug in relcomm; the checklist still validates the plan"))
        elif event.worker.group == "reload":
            self.show_plan_error(f"Reloading the plan failed: {error}")

    def show_error(self, error: RenderError) -> None:
        self.rendered, self.render_error = None, error
        where = visible(f"{Path(error.file).name if error.file else ''}{f':{error.line}' if error.line else ''}")
        parts: list = [("Cannot render this communique\n", "bold $error"), visible_lines(error.message)]
        if where:
            parts.append((f"\n  at {where}", "bold"))
        if error.hint:
            parts.append((f"\n  hint: {visible(error.hint)}", "italic"))
        widget = self.query_one("#render-error", Static)
        widget.update(Content.assemble(*parts))
        widget.display = True
        for name in ("#headers", "#text-part", "#raw"):
            self.query_one(name).display = False

    async def show_rendered(self, rendered: Rendered) -> None:
        self.rendered, self.render_error = rendered, None
        scroll = self.query_one("#preview", VerticalScroll)
        keep_y = scroll.scroll_y
        self.query_one("#render-error").display = False
        self.query_one("#headers", Static).update(self.headers_content(rendered))
        raw = self.query_one("#raw", Static)
        markdown = self.query_one("#text-part", Markdown)
        if self.raw:
            raw.update(plain_lines(self.raw_text(rendered)))
        else:
            readable = visible_lines(self.readable_text(rendered))
            if readable != self._shown_markdown:
                # Rebuilding the Markdown blocks is the slow part; a change elsewhere needs none.
                self._shown_markdown = readable
                await markdown.update(readable)
        self.query_one("#headers").display = not self.raw
        markdown.display = not self.raw
        raw.display = self.raw
        # A re-render after a file change must not throw the reader back to the top.
        self.call_after_refresh(scroll.scroll_to, y=keep_y, animate=False)

    def headers_content(self, rendered: Rendered) -> Content:
        communique = self.plan.communique(rendered.communique_id)
        rows: list[tuple[str, str]] = []
        headers = dict(rendered.headers)
        for name in HEADER_ORDER:
            if name in headers:
                rows.append((name, SET_WHEN_SENT.get(name, headers.pop(name))))
        rows += [(name, SET_WHEN_SENT.get(name, value)) for name, value in headers.items()]
        if rendered.channel != "email":
            rows.insert(0, ("Channel", rendered.channel))
            if rendered.subject and not any(name == "Subject" for name, _ in rows):
                rows.append(("Subject", rendered.subject))
            rows += self.channel_rows(communique)
        # Align values after the common headers; rare long ones (Disposition-Notification-To) just follow.
        width = max((len(name) for name, _ in rows if len(name) <= 11), default=0) + 1
        lines = [Content.assemble((f"{visible(name)}:".ljust(width), "bold $accent"), " ", visible(value))
                 for name, value in rows]
        if rendered.invitation:
            # The calendar invitation as the recipient's calendar shows it (rendered: never the plan's text).
            lines.append(Content(""))
            lines.append(Content.assemble((visible(rendered.invitation[0]), "bold $accent")))
            lines += [Content(visible(line)) for line in rendered.invitation[1:]]
        return Content("\n").join(lines)

    def channel_rows(self, communique: Communique | None) -> list[tuple[str, str]]:
        if communique is None:
            return []
        spec = communique.spec

        def shown(value) -> str:
            return describe(value) if is_reference(value) else str(value)

        if communique.channel in ("webhook", "pager") and spec.url is not None:
            return [(spec.method, shown(spec.url)), ("Format", spec.preset or spec.format or "json")]
        if communique.channel == "publish":
            rows = [("Writes", spec.path or "(no path)")]
            if spec.public_url:
                rows.append(("Public URL", spec.public_url))
            return rows
        if communique.channel == "manual":
            return [("Action", "done by hand; you confirm it in relcomm afterwards")]
        return []

    def readable_text(self, rendered: Rendered) -> str:
        if rendered.channel in ("webhook", "pager") and rendered.payload is not None:
            body = rendered.payload.decode("utf-8", errors="replace")
            return f"What will be posted:\n\n```\n{body}\n```\n"
        return rendered.text

    def raw_text(self, rendered: Rendered) -> str:
        if rendered.message is not None:
            return rendered.message.as_string()
        if rendered.payload is not None:
            return rendered.payload.decode("utf-8", errors="replace")
        return rendered.html or rendered.text

    async def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        self.query_one("#preview").border_title = "Raw message" if self.raw else "Preview"
        if self.rendered is not None:
            await self.show_rendered(self.rendered)

    # -- live reload --------------------------------------------------------------------------

    def check_files(self) -> None:
        state = file_state(list(self._files) or watched_files(self.plan))
        if state != self._files:
            self._files = state
            self.generation += 1
            self.reload_worker(self.app.plan_path)

    def action_reload(self) -> None:
        self.generation += 1
        self.reload_worker(self.app.plan_path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="reload")
    def reload_worker(self, path: Path) -> None:
        try:
            result: Plan | PlanError = load_plan(path)
        except PlanError as error:
            result = error
        self.post_message(self.PlanLoaded(result))

    def on_preview_screen_plan_loaded(self, message: PlanLoaded) -> None:
        if isinstance(message.result, PlanError):
            self.show_plan_error(str(message.result))
            return
        self.load_error = None
        self.query_one("#plan-error").display = False
        self.app.plan = message.result
        # The plan may now name other templates or member files: watch those. Files already watched
        # keep the state seen before loading, so an edit made during the load is still noticed.
        files = watched_files(message.result)
        fresh = file_state([f for f in files if f not in self._files])
        self._files = {f: self._files[f] if f in self._files else fresh[f] for f in files}
        self.fill_communiques()

    def show_plan_error(self, text: str) -> None:
        widget = self.query_one("#plan-error", Static)
        widget.update(Content.assemble(("The plan does not load; showing the last good version.\n", "bold"),
                                       visible_lines(text)))
        widget.display = True

    def action_back(self) -> None:
        self.app.pop_screen()
