"""Group commit of the engine's ledger writes: durable, and cheap enough to do per message.

Every `sending` row and every outcome is committed before the engine goes on (exactly-once
needs both on disk), but the workers ask for them at once: writes asked for while a commit
runs go together into the next one (one transaction, one fsync), in a thread so an fsync
never stalls the event loop and the other connections.
"""

from __future__ import annotations

import asyncio

from ..store.ledger import Ledger


class Committer:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.commits = 0

    async def submit(self, works: list) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((works, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self.ledger.apply, [w for works, _ in batch for w in works])
                self.commits += 1
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            except Exception:
                # One bad write must not sink the others: redo them one by one.
                for works, future in batch:
                    try:
                        await asyncio.to_thread(self.ledger.apply, works)
                        self.commits += 1
                        if not future.done():
                            future.set_result(None)
                    except Exception as error:
                        if not future.done():
                            future.set_exception(error)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
