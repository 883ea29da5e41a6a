"""Locks shared by the processes of one machine (SQLite backend), and the correlator needing one.

Workers on one machine share one SQLite store. The store serialises each
statement, but a correlation is a read-modify-write over several rows
(incident, entity index, fingerprints, alert index): two processes grouping
alerts into the same incident at once would each write back their own copy,
and one alert would vanish from the incident. `ProcessLockedCorrelator`
holds an exclusive `flock` on a file beside the store for the whole
correlation, so processes take turns exactly as tasks inside one process do.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path

from soc_agent.correlate import CorrelationConfig, CorrelationResult, CorrelationState, Correlator
from soc_agent.models import Alert

__all__ = [
    "INCIDENT_STRIPES",
    "FileIncidentLocks",
    "FileLock",
    "ProcessLockedCorrelator",
    "lock_path",
]

INCIDENT_STRIPES = 64

_POLL_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01)


class FileLock:
    """An exclusive advisory lock on a file, safe to wait for from the event loop.

    Implements `soc_agent.store.locks.Lock` for the processes of one machine.

    Waiting polls a non-blocking `flock` with a short backoff instead of
    blocking a thread, so a cancelled waiter never acquires the lock later
    behind everybody's back. The kernel releases it when the process dies.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._local = asyncio.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _try(self) -> bool:
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @asynccontextmanager
    async def hold(self, *, wait: bool = True) -> AsyncIterator[bool]:
        """Hold the lock for the block; with `wait=False`, yield False if someone else has it."""
        async with self._local:
            attempt = 0
            while not self._try():
                if not wait:
                    yield False
                    return
                await asyncio.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
                attempt += 1
            try:
                yield True
            finally:
                self._release()

    def close(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None


class ProcessLockedCorrelator(Correlator):
    """The core correlator, serialised across the processes sharing `lock`."""

    def __init__(
        self, state: CorrelationState, config: CorrelationConfig, *, lock: FileLock
    ) -> None:
        super().__init__(state, config)
        self._process_lock = lock

    async def correlate(self, alert: Alert) -> CorrelationResult:
        async with self._process_lock.hold():
            return await super().correlate(alert)


def lock_path(store: Path, purpose: str) -> Path:
    """A lock file beside the store, shared by every process using that store."""
    return store.with_name(f"{store.name}.{purpose}.lock")


class FileIncidentLocks:
    """incident id -> an exclusive hold on that incident's lock stripe, across processes.

    Implements `soc_agent.store.locks.IncidentLocks`.

    Stands in for the Agent's in-process per-incident locks: `locks[incident_id]`
    is an async context manager, as the Agent uses them. Without it, two
    processes could decide the same incident with the same alert set (hence
    the same decision id) from different trigger alerts, and publish two
    different decisions under one id.
    """

    def __init__(self, store: Path, stripes: int = INCIDENT_STRIPES) -> None:
        self._locks = [FileLock(lock_path(store, f"incident-{i:02d}")) for i in range(stripes)]

    def __getitem__(self, incident_id: str) -> AbstractAsyncContextManager[bool]:
        digest = hashlib.sha256(incident_id.encode()).digest()
        return self._locks[int.from_bytes(digest[:4], "big") % len(self._locks)].hold()

    def close(self) -> None:
        for lock in self._locks:
            lock.close()
