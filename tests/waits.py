"""Waiting on a condition instead of sleeping a fixed time (issue 15).

A test waits for what it needs to be true, with a deadline generous enough for a loaded 2-core
machine; it never asserts how long something took (speed figures belong in bench/ scripts).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

DEADLINE = 30.0  # seconds: only ever reached when the condition will never come true


async def until(condition: Callable[[], object], what: str, *, seconds: float = DEADLINE, step: float = 0.005) -> None:
    """Return as soon as `condition()` is true; fail naming `what` if it is not by the deadline."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting for {what}"
        await asyncio.sleep(step)


def until_sync(condition: Callable[[], object], what: str, *, seconds: float = DEADLINE, step: float = 0.005) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting for {what}"
        time.sleep(step)


def parked_on_pause(engine) -> int:
    """How many of the engine's workers wait on its pause (asyncio.Event keeps its waiters): with all
    of them parked, nothing can start until resume, so a test needs no observation window."""
    return sum(1 for waiter in engine._running._waiters if not waiter.done())
