"""The audit record of a release's communications: who was told what, when, over which
channel, and what came back. Markdown (readable in a terminal and in a ticket), HTML (to
attach or publish) and CSV (one row per delivery, for spreadsheets).

Built from the same view model as the receipts screen, plus the ledger's runs and sign-offs;
each recipient's outcome is receipts.status.fate_of, the one fate every view shows.
Every value in it (names, ids, replies, reasons, run outcomes, paths) comes from a plan, a server
or a stranger's mail and is written through `terminal_text.visible` in all three formats: the
record is read with `cat`, `less` and in terminals, where ESC sequences, CR, bidi overrides or a
line break inside a name would rewrite or forge what it says.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from dataclasses import dataclass
from email.utils import parseaddr

from ..store.ledger import Ledger
from ..plan.model import Plan
from ..receipts.status import ReceiptStatus, RecipientReceipt, build_status, fate_of
from ..common.terminal_text import visible as v

FORMATS = ("md", "html", "csv")

# What a spreadsheet user filters on first, one fact a column (the name apart from the address; the
# fate the receipts show, never the relay's "accepted" on a bounced row), then the audit detail.
CSV_COLUMNS = (
    "name", "address", "group", "communique", "channel", "fate", "reason", "sent", "fate_time",
    "standing", "fate_text", "send_state", "accepted", "delivered", "relayed", "displayed", "acknowledged",
    "bounced", "complained", "auto_replied", "delayed", "unverified", "last_update", "correction_of", "delivery_id",
)


@dataclass(frozen=True)
class AuditRecord:
    plan: Plan
    status: ReceiptStatus
    runs: list
    signoffs: list[dict]
    generated: str
    script: tuple = ()  # (step, kind, at, who, detail): what the plan's script did, and who decided (issue 14)


def collect(plan: Plan, ledger: Ledger, *, generated: str | None = None) -> AuditRecord:
    version = plan.release.version
    return AuditRecord(plan, build_status(plan, ledger), ledger.runs(version), ledger.signoffs(version),
                       generated or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       tuple(ledger.script_events(version)))


def _script_lines(record: AuditRecord) -> list[str]:
    """The script's events in words: a step started, a checkpoint released by whom, a wait skipped..."""
    lines = []
    for step, kind, at, who, detail in record.script:
        if kind == "ready":
            continue  # the moment its wait began: the next event says what happened
        lines.append(f"{_when(at)} {step}: {kind}" + (f" by {who}" if kind in (
            "released", "wait skipped", "halt overridden") else "") + (f": {detail}" if detail else ""))
    return lines


def render(record: AuditRecord, fmt: str) -> str:
    if fmt == "md":
        return to_markdown(record)
    if fmt == "html":
        return to_html(record)
    if fmt == "csv":
        return to_csv(record)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _when(stamp: str | None) -> str:
    return v(stamp.replace("T", " ")[:19]) + " UTC" if stamp else ""


def _pct(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else "0"


def _outcome(row: RecipientReceipt) -> str:
    return v(fate_of(row, _when).describe())


def _rows_by_group(record: AuditRecord) -> list[tuple[str, str, list[RecipientReceipt]]]:
    groups = []
    for group in record.plan.groups:
        rows = [r for r in record.status.rows if r.group_id == group.id]
        groups.append((group.id, group.name, rows))
    orphans = [r for r in record.status.rows if record.plan.group(r.group_id) is None]
    if orphans:
        groups.append(("(other)", "No longer in the plan", orphans))
    return groups


def to_markdown(record: AuditRecord) -> str:
    plan, status = record.plan, record.status
    out = [f"# {v(plan.release.name)} {v(plan.release.version)}: release communications record", ""]
    out.append(f"Generated {_when(record.generated)} from `{v(plan.path)}`.")
    if plan.release.date:
        out.append(f"Release date: {plan.release.date.isoformat()}.")
    out.append("")
    out.append("## Summary")
    out.append("")
    out.append("| | total | reached | confirmed | bounced | unknown |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for c in [*status.by_communique, status.overall]:
        label = "**all**" if c is status.overall else f"`{v(c.id)}`"
        out.append(f"| {label} | {c.total} | {_pct(c.reached, c.total)} | {_pct(c.confirmed, c.total)} | "
                   f"{_pct(c.bounced, c.total)} | {_pct(c.unknown, c.total)} |")
    if status.by_group:
        out.append("")
        out.append("| group (people) | total | reached | confirmed | bounced | unknown |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for c in status.by_group:
            out.append(f"| `{c.id}` | {c.total} | {_pct(c.reached, c.total)} | {_pct(c.confirmed, c.total)} | "
                       f"{_pct(c.bounced, c.total)} | {_pct(c.unknown, c.total)} |")
    if status.other_send:
        out.append("")
        out.append(f"{status.other_send} inbound report(s) were about another send and are not counted here.")
    if status.unmatched:
        out.append("")
        out.append(f"{status.unmatched} inbound report(s) matched no delivery.")
    out.append("")
    out.append("## Sends")
    out.append("")
    if record.runs:
        for run in record.runs:
            out.append(f"- run {run.id}: {v(run.mode)} by {v(run.who)} on {v(run.host)}, {_when(run.started)}"
                       + (f" to {_when(run.finished)}" if run.finished else "")
                       + (f": {v(run.outcome)}" if run.outcome else ""))
    else:
        out.append("Nothing has been sent.")
    if record.script:
        out.append("")
        out.append("## Script")
        out.append("")
        out.extend(f"- {v(line)}" for line in _script_lines(record))
    reviewed = [s for s in record.signoffs if s["reviewed"]]
    if reviewed:
        out.append("")
        out.append("## Reviews")
        out.append("")
        for s in reviewed:
            out.append(f"- {v(s['group_id'])} reviewed by {v(s['who'])}, {_when(s['at'])}")
    for ident, name, rows in _rows_by_group(record):
        out.append("")
        out.append(f"## {v(name)} (`{v(ident)}`)")
        out.append("")
        if not rows:
            out.append("No deliveries.")
            continue
        out.append("| recipient | communique | channel | sent | delivered | displayed | acknowledged | outcome |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            cells = (r.recipient, r.communique_id, r.channel, _when(r.sent), _when(r.delivered), _when(r.displayed),
                     _when(r.acknowledged), _outcome(r))
            out.append("| " + " | ".join(v(c).replace("|", "\\|") for c in cells) + " |")
    out.append("")
    return "\n".join(out)


def to_html(record: AuditRecord) -> str:
    plan, status = record.plan, record.status
    def e(text: object) -> str:
        return html.escape(v(text))

    title = f"{plan.release.name} {plan.release.version}: release communications record"
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left}.bounced{color:#a00}"
        ".confirmed{color:#060}</style></head><body>",
        f"<h1>{e(title)}</h1>", f"<p>Generated {e(_when(record.generated))} from <code>{e(str(plan.path))}</code>.</p>",
        "<h2>Summary</h2><table><tr><th></th><th>total</th><th>reached</th><th>confirmed</th><th>bounced</th>"
        "<th>unknown</th></tr>",
    ]
    for c in [*status.by_communique, status.overall]:
        label = "all" if c is status.overall else c.id
        parts.append(f"<tr><th>{e(label)}</th><td>{c.total}</td><td>{_pct(c.reached, c.total)}</td>"
                     f"<td>{_pct(c.confirmed, c.total)}</td><td>{_pct(c.bounced, c.total)}</td>"
                     f"<td>{_pct(c.unknown, c.total)}</td></tr>")
    parts.append("</table>")
    if status.by_group:
        parts.append("<table><tr><th>group (people)</th><th>total</th><th>reached</th><th>confirmed</th>"
                     "<th>bounced</th><th>unknown</th></tr>")
        for c in status.by_group:
            parts.append(f"<tr><th>{e(c.id)}</th><td>{c.total}</td><td>{_pct(c.reached, c.total)}</td>"
                         f"<td>{_pct(c.confirmed, c.total)}</td><td>{_pct(c.bounced, c.total)}</td>"
                         f"<td>{_pct(c.unknown, c.total)}</td></tr>")
        parts.append("</table>")
    if status.other_send:
        parts.append(f"<p>{status.other_send} inbound report(s) were about another send and are not counted here.</p>")
    if status.unmatched:
        parts.append(f"<p>{status.unmatched} inbound report(s) matched no delivery.</p>")
    parts.append("<h2>Sends</h2><ul>")
    for run in record.runs:
        parts.append(f"<li>run {run.id}: {e(run.mode)} by {e(run.who)} on {e(run.host)}, {e(_when(run.started))}"
                     + (f": {e(run.outcome)}" if run.outcome else "") + "</li>")
    parts.append("</ul>")
    if record.script:
        parts.append("<h2>Script</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in _script_lines(record)) + "</ul>")
    for ident, name, rows in _rows_by_group(record):
        parts.append(f"<h2>{e(name)} <small>({e(ident)})</small></h2>")
        if not rows:
            parts.append("<p>No deliveries.</p>")
            continue
        parts.append("<table><tr><th>recipient</th><th>communique</th><th>channel</th><th>sent</th><th>delivered</th>"
                     "<th>displayed</th><th>acknowledged</th><th>outcome</th></tr>")
        for r in rows:
            cells = (r.recipient, r.communique_id, r.channel, _when(r.sent), _when(r.delivered), _when(r.displayed),
                     _when(r.acknowledged))
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells)
                         + f'<td class="{e(r.standing)}">{e(_outcome(r))}</td></tr>')
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text: reasons come from strangers' mail, and one starting with
    "=", "+", "-" or "@" would be run as a formula when the CSV is opened (OWASP: CSV injection)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def name_and_address(row: RecipientReceipt) -> tuple[str, str]:
    """The person's name and address apart. A post to a channel (webhook, publish, pager) has no
    address: its "name" is the groups it went to; a manual step for someone without email neither."""
    if "@" in row.recipient_key and not row.recipient_key.startswith("name:"):
        name, address = parseaddr(row.recipient)
        if address and "@" in address:
            return name, address
        return "", row.recipient_key
    return row.recipient, ""


def to_csv(record: AuditRecord) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for _, _, rows in _rows_by_group(record):
        for r in rows:
            fate = fate_of(r, _when)
            name, address = name_and_address(r)
            writer.writerow(_cell(v(str(c))) for c in [
                name, address, r.group_id, r.communique_id, r.channel, fate.outcome, fate.reason or r.reason,
                r.sent or "", fate.since or "", fate.standing, fate.text, r.state, r.accepted or "",
                r.delivered or "", r.relayed or "", r.displayed or "", r.acknowledged or "", r.bounced or "",
                r.complained or "", r.auto_replied or "", r.delayed or "", fate.unverified, r.last_update or "",
                r.person if r.person != r.recipient_key else "", r.delivery_id,
            ])
    return buffer.getvalue()
