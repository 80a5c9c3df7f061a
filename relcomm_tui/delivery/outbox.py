"""The dry run: what every delivery would send, written to `<state>/outbox`; nothing leaves.

Every channel does it the same way: `channel.rehearse(job)` gives one file (secrets masked)
and `channels.base.Outbox` writes it: email into the outbox's Maildir (`new/`), the others as
`<outbox>/<communique>/<delivery>.json|.html|.txt`. Nothing is recorded as sent; the run is
logged as a dry run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..channels import DeliveryJob, Outbox, channel_factory, render_error_text
from ..plan.files import changes
from ..plan.model import Communique, Plan
from ..store.ledger import Ledger, LedgerError, delivery_id, new_envelope_id, new_message_id
from ..store.state import check_outbox
from .events import CommuniqueSkipped, SendError
from .jobs import channel_options, delivery_audience, select_communiques, sender_domain


@dataclass(frozen=True)
class DryRunResult:
    outbox: Path
    written: int
    skipped: tuple[CommuniqueSkipped, ...]
    failures: tuple[str, ...] = ()


def refuse_changed_files(plan: Plan) -> None:
    """A file of the plan changed on disk since it was loaded (and checked): nothing is written or sent."""
    changed = changes(plan)
    if changed is not None:
        raise SendError(changed.message.replace("; nothing more is sent", "; nothing was written or sent"),
                        "review the change, then load the plan again (relcomm validate PLAN, or `r` in the app)")


def dry_run(plan: Plan, ledger: Ledger, *, only: Sequence[str] | None = None,
            render: Callable[[DeliveryJob], object] | Mapping[str, Callable] | None = None,
            who: str | None = None) -> DryRunResult:
    """Write what every delivery would send into `<state>/outbox`; nothing is recorded as sent."""
    refuse_changed_files(plan)
    folder = ledger.path.parent / "outbox"
    try:
        check_outbox(ledger.path.parent, folder)  # a shipped link there would receive every message
    except LedgerError as error:
        raise SendError(error.message, error.hint) from None
    communiques = select_communiques(plan, only)
    run_id = ledger.start_run("dry-run", plan.release.version, plan.digest, who)
    # The channels are async; a thread of its own runs them whether or not the caller runs a loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(asyncio.run, _rehearse(plan, Outbox(folder), communiques, render)).result()
    ledger.finish_run(run_id, f"dry run: {result.written} message(s) in {folder}")
    return result


async def _rehearse(plan: Plan, outbox: Outbox, communiques: list[Communique], render: object) -> DryRunResult:
    written, skipped, failures = 0, [], []
    domain = sender_domain(plan)
    for communique in communiques:
        factory = channel_factory(communique.channel)
        if factory is None:
            skipped.append(CommuniqueSkipped(communique.id, communique.channel,
                                             f"not written: channel {communique.channel} not available yet"))
            continue
        channel = factory(plan, **channel_options(communique.channel, None, render))
        for group, recipient in delivery_audience(plan, communique):
            ident = delivery_id(plan.release.version, communique.id, recipient.key)
            job = DeliveryJob(ident, communique, group, recipient, new_message_id(domain), new_envelope_id())
            try:
                outbox.write(job, await channel.rehearse(job))
            except Exception as error:  # a template or preset that cannot go out as written
                failures.append(f"{communique.id} -> {recipient.display}: {render_error_text(error)}")
                continue
            written += 1
    return DryRunResult(outbox.folder, written, tuple(skipped), tuple(failures))
