"""The worker's components: the embedded wiring, serialised where processes share a store.

Inside one process the Agent correlates one alert at a time and decides one
incident at a time. Worker processes sharing one store need the same across
processes, or two of them decide the same incident with the same alert set
(hence the same decision id) from different trigger alerts, and publish two
different decisions under one id. So the worker's Agent takes file locks:
one for correlation, and one of `INCIDENT_STRIPES` per incident id for deciding.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path

from soc_agent.config import Settings
from soc_agent.runtime.components import Components, open_components
from soc_agent.runtime.kafka.locks import FileLock, ProcessLockedCorrelator

__all__ = ["INCIDENT_STRIPES", "FileIncidentLocks", "lock_path", "open_worker_components"]


INCIDENT_STRIPES = 64


def lock_path(store: Path, purpose: str) -> Path:
    """A lock file beside the store, shared by every process using that store."""
    return store.with_name(f"{store.name}.{purpose}.lock")


class FileIncidentLocks:
    """incident id -> an exclusive hold on that incident's lock stripe, across processes.

    Stands in for the Agent's in-process per-incident locks: `locks[incident_id]`
    is an async context manager, as the Agent uses them.
    """

    def __init__(self, store: Path, stripes: int = INCIDENT_STRIPES) -> None:
        self._locks = [FileLock(lock_path(store, f"incident-{i:02d}")) for i in range(stripes)]

    def __getitem__(self, incident_id: str) -> AbstractAsyncContextManager[bool]:
        digest = hashlib.sha256(incident_id.encode()).digest()
        return self._locks[int.from_bytes(digest[:4], "big") % len(self._locks)].hold()

    def close(self) -> None:
        for lock in self._locks:
            lock.close()


@asynccontextmanager
async def open_worker_components(
    settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[Components]:
    """`open_components`, with the agent's correlation serialised across worker processes.

    The same components, with a `ProcessLockedCorrelator` over the same store and
    per-incident file locks handed to the Agent.
    """
    lock = FileLock(lock_path(settings.store, "correlation"))
    incident_locks = FileIncidentLocks(settings.store)
    try:
        async with open_components(
            settings,
            clock=clock,
            correlator_factory=lambda store: ProcessLockedCorrelator(
                store, settings.correlation, lock=lock
            ),
            incident_locks=incident_locks,
        ) as c:
            yield c
    finally:
        lock.close()
        incident_locks.close()
