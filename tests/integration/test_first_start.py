"""Processes starting at once on a fresh SQLite store agree on one audit key.

The first writer generates the key file beside the store and marks the chain
keyed. A process that found no key file, then found the chain keyed by a
process that started a moment later, must use that process's key, not stop
with "the key file is missing" (a worker of three started together did, once).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from soc_agent.audit.keying import key_file_for, read_key_file
from soc_agent.runtime.backend import open_backend
from soc_agent.settings import load_settings

PROCESSES = 4
ROUNDS = 8


def _start(store: str, barrier: Barrier) -> None:
    async def run() -> None:
        settings = load_settings(store=store, agent_id="worker")
        barrier.wait()
        async with open_backend(settings):
            pass

    asyncio.run(run())


async def _verified(store: Path) -> int:
    """The chain verifies with the one key file; its keyed markers."""
    async with open_backend(load_settings(store=store, agent_id="verifier")) as backend:
        assert (await backend.audit.verify()).ok
        return len(await backend.audit.list(action_prefix="audit.keyed"))


def test_writers_starting_together_share_the_first_ones_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        store = tmp_path / f"round-{round_}" / "soc-agent.db"
        store.parent.mkdir()
        barrier = context.Barrier(PROCESSES)
        procs = [
            context.Process(target=_start, args=(str(store), barrier)) for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * PROCESSES, f"round {round_}"
        assert read_key_file(key_file_for(store)) is not None
        assert asyncio.run(_verified(store)) >= 1
