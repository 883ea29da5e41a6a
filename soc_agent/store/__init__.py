"""Storage: the protocol, SQLite (one machine) and Elasticsearch (`store.elasticsearch`)."""

from soc_agent.store.base import ActionRecord, ClaimResult, StateStore, Store
from soc_agent.store.sqlite import SQLiteStore

__all__ = ["ActionRecord", "ClaimResult", "SQLiteStore", "StateStore", "Store"]
