"""The lock protocols: how processes sharing a backend take turns, whichever backend it is.

`Lock` is one named lock that every process using the backend contends for.
`FileLock` (an `flock` beside the SQLite store: the processes of one machine)
and `Lease` (a document in Elasticsearch: workers on any machine) implement
it; `Backend.lock` hands out the configured one, so the worker's chores
(audit export, maintenance) never know which.

`IncidentLocks` is a lock per incident, held with `async with locks[incident_id]`:
how the agent serialises decisions on one incident. It lives here, beside
`Lock`, so the pipeline and the runtime backends share it without the runtime
reaching into the pipeline for a type.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["IncidentLocks", "Lock"]


class Lock(Protocol):
    """An exclusive lock across the processes sharing a backend."""

    def hold(self, *, wait: bool = True) -> AbstractAsyncContextManager[bool]:
        """Hold the lock for the block; with `wait=False`, yield False if someone else has it."""
        ...


class IncidentLocks(Protocol):
    """Serialises decisions per incident; a runtime with several processes passes its own."""

    def __getitem__(self, incident_id: str) -> AbstractAsyncContextManager[object]: ...
