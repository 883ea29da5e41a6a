"""Per-key turns in arrival order: correlations on unrelated keys run at once, related ones
one after the other, in the order they asked.

A plain lock per key would let a later alert overtake an earlier one on a key
while the earlier one still waits for another of its keys, so the same input
could correlate differently from run to run. Here a caller queues on all of
its keys at once, before it first yields to the event loop, and goes when it
is first in every one of its queues. Turns are therefore taken in one global
order (arrival), which also rules out deadlock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

__all__ = ["KeyTurns"]


class KeyTurns:
    """In-process turns per key; memory holds only keys someone is queued on."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    @asynccontextmanager
    async def hold_all(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Wait for this caller's turn on every key, hold them for the block."""
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[None] = loop.create_future()
        keys = sorted(set(names))
        for key in keys:  # synchronously: the place in line is the moment of the call
            self._queues.setdefault(key, deque()).append(mine)
        try:
            while not all(self._queues[k][0] is mine for k in keys):
                waiting: asyncio.Future[None] = loop.create_future()

                def wake(_: object, waiting: asyncio.Future[None] = waiting) -> None:
                    if not waiting.done():
                        waiting.set_result(None)

                for blocker in {self._queues[k][0] for k in keys} - {mine}:
                    blocker.add_done_callback(wake)
                await waiting
            yield
        finally:
            for key in keys:
                queue = self._queues[key]
                queue.remove(mine)
                if not queue:
                    del self._queues[key]
            if not mine.done():
                mine.set_result(None)  # wakes whoever waited for this caller
