"""Run the plan's script: start each step when the scheduler says so, by asking the send engine for
exactly that step's communiques, and wait (clock, checkpoint, confirmations) in between.

A layer above the engine: the engine sends a subset of communiques exactly once (`only=`), as it
does for `relcomm send --only`; the runner decides which subset and when. One engine run at a time
(the send lock allows no other): steps that come due while a step sends start when it ends, so
a step's messages never go out before the steps it comes after are done, whatever the concurrency.

Everything the runner decides is in the ledger before it acts (a step's `ready` time before its
wait, `started` before its first message), so a killed, stopped or reopened send resumes at the
same point: a finished step is never sent again and a wait that has not elapsed is never skipped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from ..delivery.engine import RunSummary, SendEngine, SendError
from ..receipts.refresh import refresh
from ..store.ledger import Ledger
from ..plan.model import Plan
from .clock import Clock
from .progress import FactsCache, expected_deliveries, record, release_checkpoint, script_state, skip_wait
from .scheduler import DONE, EV_STARTED, HALTED as HALTED_STEP, READY, RUNNING, WAITING, ScriptState

COMPLETE, SENDING_OVER, HALTED, STOPPED = "complete", "sending over", "halted", "stopped"


class ScriptStopped(SendError):
    """The script cannot go on by itself (a step that sends nothing when asked to)."""


@dataclass
class ScriptResult:
    state: ScriptState
    ending: str                                        # COMPLETE, SENDING_OVER, HALTED, STOPPED
    summaries: list[RunSummary] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.ending not in (COMPLETE, SENDING_OVER):
            return 1
        return 1 if any(s.exit_code for s in self.summaries) or any(
            v.status != "done" and not v.to_tick for v in self.state.steps) else 0


class ScriptRunner:
    """Runs a plan's steps in order. `await run()` once; `release`, `skip_wait`, `cancel`,
    `pause`/`resume` (the engine of the step sending now) from anywhere in the loop."""

    def __init__(self, plan: Plan, ledger: Ledger, *, clock: Clock | None = None,
                 on_event: Callable[[object], None] | None = None,
                 on_state: Callable[[ScriptState], None] | None = None,
                 stop_when_halted: bool = True, poll: float = 2.0, who: str | None = None, host: str | None = None,
                 password: str | None = None, resend_in_doubt: bool = False, retry_failed: bool = False,
                 engine_options: dict | None = None) -> None:
        self.plan = plan
        self.ledger = ledger
        self.clock = clock or Clock()
        self.on_event = on_event
        self.on_state = on_state
        self.stop_when_halted = stop_when_halted
        self.poll = poll
        self.who, self.host = who, host
        self.password = password
        self.resend_in_doubt, self.retry_failed = resend_in_doubt, retry_failed
        self.engine_options = dict(engine_options or {})
        self.engine: SendEngine | None = None
        self.state: ScriptState | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.paused = False
        self._expected = expected_deliveries(plan)
        self._facts = FactsCache()  # worked out again only when the ledger changed
        self._last_refresh: object = None  # the clock's time of the last receipts refresh

    # -- control ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop: the step sending now stops starting messages; a wait ends at once (it keeps counting
        in the ledger: the next send resumes it)."""
        self._stopping = True
        if self.engine is not None:
            self.engine.cancel()
        self._wake.set()

    def pause(self) -> None:
        """No new message and no new step starts until `resume()` (waits keep counting)."""
        self.paused = True
        if self.engine is not None:
            self.engine.pause()

    def resume(self) -> None:
        self.paused = False
        if self.engine is not None:
            self.engine.resume()
        self._wake.set()

    def release(self, step_id: str, note: str = "") -> str:
        text = release_checkpoint(self.plan, self.ledger, step_id, self.clock.now(), who=self.who or "",
                                  note=note, scale=self.clock.scale)
        self._wake.set()
        return text

    def skip_wait(self, step_id: str) -> str:
        text = skip_wait(self.plan, self.ledger, step_id, self.clock.now(), who=self.who or "", scale=self.clock.scale)
        self._wake.set()
        return text

    def wake(self) -> None:
        """Look again now (a manual task was ticked, a checkpoint released elsewhere)."""
        self._wake.set()

    # -- the run ------------------------------------------------------------------------------

    async def evaluate(self) -> ScriptState:
        """Record what the scheduler says happened, then return where the script stands."""
        for _ in range(len(self.plan.steps) * 4 + 2):  # each round records at most one event per step
            now = self.clock.now()
            state = await asyncio.to_thread(script_state, self.plan, self.ledger, now, scale=self.clock.scale,
                                            expected=self._expected, cache=self._facts)
            if not state.record:
                break
            await asyncio.to_thread(record, self.plan, self.ledger, list(state.record), now, self.who or "")
        self.state = state
        if self.on_state is not None:
            self.on_state(state)
        return state

    async def run(self) -> ScriptResult:
        summaries: list[RunSummary] = []
        if self.resend_in_doubt or self.retry_failed:
            # The engineer's explicit retry covers the steps already started (a halt may clear).
            state = await self.evaluate()
            started = [c for v in state.steps if v.status in (DONE, HALTED_STEP, RUNNING) or v.to_tick
                       for c in v.step.send]
            if started:
                summaries.append(await self._send(started, resend_in_doubt=self.resend_in_doubt,
                                                  retry_failed=self.retry_failed))
        last_attempt: tuple[tuple[str, ...], int] | None = None
        while True:
            state = await self.evaluate()
            if self._stopping:
                return ScriptResult(state, STOPPED, summaries)
            if state.start and not self.paused:
                progress = sum(v.sent for v in state.steps)
                if last_attempt == (state.start, progress):
                    raise ScriptStopped(f"step {state.start[0]} could not be sent: its deliveries stay unsent",
                                        "relcomm status PLAN shows which; fix the plan or the channel and send again")
                last_attempt = (state.start, progress)
                summaries.append(await self._start(state))
                continue
            if state.complete:
                return ScriptResult(state, COMPLETE, summaries)
            if state.sending_over:
                return ScriptResult(state, SENDING_OVER, summaries)
            if state.halted is not None and self.stop_when_halted:
                return ScriptResult(state, HALTED, summaries)
            if await self._maybe_refresh_receipts(state):
                continue  # new reports: look again now
            timeout = self.poll
            if state.next_change is not None:
                timeout = min(timeout, max(0.0, (state.next_change - self.clock.now()).total_seconds()))
            await self.clock.wait(timeout, self._wake)
            self._wake.clear()

    async def _start(self, state: ScriptState) -> RunSummary:
        fresh = [(step, EV_STARTED, "") for step in state.start
                 if (view := state.view(step)) is not None and view.status == READY]
        if fresh:
            # Before the first message: a kill from here on resumes the step, never forgets it.
            await asyncio.to_thread(record, self.plan, self.ledger, fresh, self.clock.now(), self.who or "")
            await self.evaluate()  # the step shows as sending
        communiques = [c for step in state.start for c in self.plan.step(step).send]  # type: ignore[union-attr]
        if not communiques:
            return RunSummary(None, {}, {})
        return await self._send(communiques)

    async def _send(self, communiques: list[str], **flags) -> RunSummary:
        engine = SendEngine(self.plan, self.ledger, only=list(dict.fromkeys(communiques)), password=self.password,
                            on_event=self.on_event, who=self.who, host=self.host, **flags, **self.engine_options)
        self.engine = engine
        try:
            if self._stopping:
                engine.cancel()
            return await engine.run()
        finally:
            self.engine = None

    async def _maybe_refresh_receipts(self, state: ScriptState) -> bool:
        """Confirmations come from the reports: read the plan's sources (every `receipts.refresh`
        seconds) while a step waits for them. True when new reports were read."""
        if not self.plan.receipts.sources:
            return False
        if not any(v.status == WAITING and v.reason.startswith("confirmations") for v in state.steps):
            return False
        now = self.clock.now()
        if self._last_refresh is not None and (now - self._last_refresh).total_seconds() < self.plan.receipts.refresh:
            return False
        self._last_refresh = now
        result = await asyncio.to_thread(refresh, self.plan, self.ledger)
        return bool(result.read)
