"""Correlation: fingerprints, incident grouping and windows, over a pluggable state.

Pure logic: no Kafka, SQLite or clock here. See `correlator` for the rules.
"""

from soc_agent.correlate.concurrent import ConcurrentCorrelator, CorrelationContended, KeyLocks
from soc_agent.correlate.correlator import (
    DEFAULT_PIVOT_TYPES,
    CorrelationConfig,
    CorrelationResult,
    Correlator,
    Outcome,
    default_incident_id,
)
from soc_agent.correlate.fingerprint import fingerprint
from soc_agent.correlate.identities import IdentityBook, load_identity_book
from soc_agent.correlate.state import CorrelationState, IncidentChanged, InMemoryCorrelationState

__all__ = [
    "DEFAULT_PIVOT_TYPES",
    "ConcurrentCorrelator",
    "CorrelationConfig",
    "CorrelationContended",
    "CorrelationResult",
    "CorrelationState",
    "Correlator",
    "IdentityBook",
    "InMemoryCorrelationState",
    "IncidentChanged",
    "KeyLocks",
    "Outcome",
    "default_incident_id",
    "fingerprint",
    "load_identity_book",
]
