"""The hash-chained audit log and its verifier."""

from soc_agent.audit.base import AuditLog
from soc_agent.audit.chain import (
    GENESIS,
    VerifyResult,
    canonical,
    compute_hash,
    seal,
    verify_events,
)
from soc_agent.audit.log import SQLiteAuditLog

__all__ = [
    "GENESIS",
    "AuditLog",
    "SQLiteAuditLog",
    "VerifyResult",
    "canonical",
    "compute_hash",
    "seal",
    "verify_events",
]
