"""Storage: the protocol, SQLite (one machine) and Elasticsearch (`store.elasticsearch`).

`store.locks` holds the lock protocols the backends implement (file locks, leases).
"""

from soc_agent.store.base import ActionRecord, ClaimResult, StateStore, Store
from soc_agent.store.locks import IncidentLocks, Lock
from soc_agent.store.sqlite import SQLiteStore

__all__ = [
    "ActionRecord",
    "ClaimResult",
    "IncidentLocks",
    "Lock",
    "SQLiteStore",
    "StateStore",
    "Store",
]
