"""`relcomm send PLAN --resend-to OLD=NEW [--only ID] [--yes]`: the communique that bounced at OLD,
sent again to the corrected address NEW (receipts/corrections.py does the work; this is its words).

Without `--only`, every email communique whose delivery to OLD bounced is corrected; with it, those
named. Each correction is said before anything is sent, then confirmed as any send is (the version
typed on a terminal, or `--yes`). A corrected address that already has the communique is said so
and not sent again. Exit 0 when every corrected address has it, 1 when one was refused or is in
doubt, 2 when nothing could be sent (bad pair, not bounced, invalid address, locked).
"""

from __future__ import annotations

import asyncio

from ..common.terminal_text import visible
from ..store.ledger import FINAL_STATES, STATE_LABELS


def parse_pairs(values: list[str]) -> list[tuple[str, str]] | str:
    """["old@x=new@y", ...] -> pairs, or the first value that is not OLD=NEW."""
    pairs = []
    for value in values:
        old, equals, new = value.partition("=")
        if not equals or not old.strip() or not new.strip():
            return value
        pairs.append((old.strip(), new.strip()))
    return pairs


def resend_to_corrected(plan, ledger, args, password, login, host, *, confirm, fail, printer) -> int:
    from ..receipts.corrections import CorrectionError, bounced_communiques, prepare_corrections  # heavy: loaded only when needed (start-up time, see commands/__init__)

    pairs = parse_pairs(args.resend_to)
    if isinstance(pairs, str):
        return fail(f"--resend-to {pairs!r} is not OLD=NEW", "e.g. --resend-to ada@acme.exmaple.com=ada@acme.example.com")
    by_communique: dict[str, dict[str, str]] = {}
    for old, new in pairs:
        communiques = list(args.only) or bounced_communiques(plan, ledger, old)
        if not communiques:
            return fail(f"nothing bounced at {old}", f"relcomm status {plan.path} shows each delivery and its fate")
        for communique_id in communiques:
            if old.lower() in {k.lower() for k in by_communique.get(communique_id, {})}:
                return fail(f"{old} is given twice", "give one corrected address for each bounced one")
            by_communique.setdefault(communique_id, {})[old] = new
    try:
        batches = [prepare_corrections(plan, ledger, cid, corrected) for cid, corrected in by_communique.items()]
    except CorrectionError as error:
        return fail(error.message, error.hint)
    for batch in batches:
        for correction in batch.corrections:
            said = (f"{batch.communique.id}: {correction.old_address} -> {correction.new_address}"
                    + (f" (bounced: {correction.reason})" if correction.reason else ""))
            if correction.done_before is not None:
                said += f"; already sent there {correction.done_before.updated[:16].replace('T', ' ')} UTC, not again"
            print(visible(said))
    if not any(batch.to_send for batch in batches):
        print("nothing to send: every corrected address already has its communique")
        return 0
    count = sum(len(batch.to_send) for batch in batches)
    if not args.yes and not confirm(plan, f"Send {count} communique(s) again at the corrected address(es)?"):
        return 2
    return asyncio.run(_send(plan, ledger, batches, password, login, host, printer, fail))


async def _send(plan, ledger, batches, password, login, host, printer, fail) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..receipts.corrections import outcome, resend_corrected
    from ..delivery.engine import SendError, SendStopped

    code = 0
    for batch in batches:
        try:
            await resend_corrected(batch, ledger, password=password, on_event=printer, who=login, host=host)
        except SendStopped as error:
            printer.done()
            return fail(f"stopped: {error.message}", error.hint)
        except SendError as error:
            printer.done()
            return fail(error.message, error.hint)
        printer.done()
        for correction, record in outcome(batch, ledger):
            state = STATE_LABELS.get(record.state, record.state) if record is not None else "not sent"
            if record is None or record.state not in FINAL_STATES:
                code = 1
            print(visible(f"{batch.communique.id} to {correction.new_address} (correcting {correction.old_address}): "
                          f"{state}"))
    return code
