"""Storage: the protocol, SQLite (embedded) and, later, Elasticsearch (distributed)."""

from soc_agent.store.base import ActionRecord, ClaimResult, Store
from soc_agent.store.sqlite import SQLiteStore

__all__ = ["ActionRecord", "ClaimResult", "SQLiteStore", "Store"]
