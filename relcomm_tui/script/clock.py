"""Time for the script, injectable: the real clock, a manual one for tests, compression for the demo.

The scheduler only ever asks `now()`; the runner waits with `wait(seconds, wake)`, which returns early
when `wake` is set (a checkpoint released in the app, a stop). Times are aware UTC datetimes.

`scale` compresses a plan's waits (`wait = "30m"` lasts 30 / scale minutes): the demo runs minutes in
seconds and says so on screen. It never changes a `not_before` (an absolute time) and it is never
read from the plan: only the demo and the tests set it.
"""

from __future__ import annotations

import asyncio
import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Clock:
    """The wall clock."""

    scale: float = 1.0

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale) if scale and scale > 0 else 1.0

    def now(self) -> dt.datetime:
        return utc_now()

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        """Until `seconds` have passed or `wake` is set, whichever comes first."""
        if wake.is_set():
            return
        try:
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            pass


class ManualClock(Clock):
    """A clock that moves only when told (`advance`, `set`): tests run 30-minute waits instantly.

    Waiters wake when the time they asked for is reached or their `wake` is set; `until_waiting`
    lets a test know the runner is asleep on this clock before it moves it."""

    def __init__(self, start: dt.datetime, scale: float = 1.0) -> None:
        super().__init__(scale)
        self._now = start
        self._tick = asyncio.Event()
        self._asleep = asyncio.Event()
        self.waiting = 0
        self.sleeps = 0  # waits begun so far: a test awaits the next one to know the runner looked again

    def now(self) -> dt.datetime:
        return self._now

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + dt.timedelta(seconds=seconds))

    async def set(self, when: dt.datetime) -> None:
        self._now = when
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
        await asyncio.sleep(0)

    async def until_waiting(self, after: int = 0) -> None:
        """Return once something sleeps on this clock (a wait begun after the first `after` ones)."""
        while not self.waiting or self.sleeps <= after:
            self._asleep.clear()
            await self._asleep.wait()

    async def advance_and_settle(self, seconds: float) -> None:
        """Move the time, then return when the runner has looked at it and sleeps again."""
        seen = self.sleeps
        await self.advance(seconds)
        await self.until_waiting(after=seen)

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        due = self._now + dt.timedelta(seconds=max(0.0, seconds))
        self.waiting += 1
        self.sleeps += 1
        self._asleep.set()
        try:
            while self._now < due and not wake.is_set():
                tick = asyncio.ensure_future(self._tick.wait())
                woken = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({tick, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    tick.cancel()
                    woken.cancel()
        finally:
            self.waiting -= 1
