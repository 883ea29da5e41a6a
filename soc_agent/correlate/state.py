"""The state correlation reads and writes, as a protocol, and an in-memory reference.

The protocol is async so that SQLite (embedded runtime) and faust tables
(Kafka runtime) can back it without blocking the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from soc_agent.errors import SocAgentError
from soc_agent.models import Alert, Incident

__all__ = [
    "BatchedCorrelationState",
    "CorrelationSnapshot",
    "CorrelationState",
    "CorrelationWrites",
    "InMemoryCorrelationState",
    "IncidentChanged",
    "PrefetchingState",
]


class IncidentChanged(SocAgentError):
    """`put_incident` refused: someone else changed (or created) the incident since it was read.

    A state that checks versions raises it; the correlation that read the
    stale copy must start again from fresh reads.
    """

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"incident {incident_id} was changed concurrently; correlate again")


class CorrelationState(Protocol):
    """Incidents plus the three indexes the correlator consults.

    - entity index: pivot entity key (`type:value`) -> incident id currently owning it
    - fingerprint index: fingerprint -> (incident id, event time of the latest sighting)
    - alert index: alert id -> incident id it was correlated into (redelivery)
    """

    async def get_incident(self, incident_id: str) -> Incident | None: ...
    async def put_incident(self, incident: Incident) -> None:
        """Write the incident; a versioned state may raise `IncidentChanged` instead."""
        ...

    async def find_by_entity(self, entity_key: str) -> str | None: ...
    async def index_entity(self, entity_key: str, incident_id: str) -> None: ...
    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None: ...
    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None: ...
    async def get_alert_incident(self, alert_id: str) -> str | None: ...
    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None: ...


@dataclass
class CorrelationSnapshot:
    """What one correlation may read, fetched at once: the alert's index entry, the
    fingerprint's sighting, the owner of each pivot and every incident those name."""

    alert_id: str
    fingerprint: str
    pivots: frozenset[str]
    alert_incident: str | None
    sighting: tuple[str, datetime] | None
    owners: dict[str, str]
    incidents: dict[str, Incident | None]  # by id; None: asked for and absent


@dataclass
class CorrelationWrites:
    """One correlation's writes, in the order the correlator made them."""

    incidents: list[Incident] = field(default_factory=list)
    entities: list[tuple[str, str]] = field(default_factory=list)  # (key, incident id)
    fingerprints: list[tuple[str, str, datetime]] = field(default_factory=list)
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (alert id, incident id)
    # The alert these writes place, which the store may save with them (see
    # `Store.save_alert`); None: they place no alert.
    placed: Alert | None = None


@runtime_checkable
class BatchedCorrelationState(CorrelationState, Protocol):
    """A state that serves a correlation in two round trips: one read, one transaction."""

    async def correlation_snapshot(
        self, alert_id: str, fingerprint: str, pivots: list[str], incident_ids: list[str]
    ) -> CorrelationSnapshot:
        """The snapshot, with `incident_ids` (e.g. the id a new incident would get) among
        the incidents read."""
        ...

    async def apply_correlation(self, writes: CorrelationWrites) -> None:
        """Every write, in one transaction: all of them or none."""
        ...


@runtime_checkable
class PrefetchingState(CorrelationState, Protocol):
    """A per-correlation view that reads what the rules may consult at once and sends
    its index writes together (Elasticsearch: two `_mget`s, a `_bulk` and one write)."""

    async def prefetch(
        self, alert_id: str, fingerprint: str, pivots: list[str], incident_ids: list[str]
    ) -> None: ...

    async def flush(self, alert: Alert | None = None) -> None:
        """Send the writes kept since `prefetch`; with the `alert` placed, the store may
        save it with them (see `Store.save_alert`)."""
        ...


class InMemoryCorrelationState:
    """Dict-backed state for tests and single-process use.

    Incidents are copied on the way in and out, as a real store would
    serialise them, so a caller mutating a returned incident changes nothing.
    """

    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.entities: dict[str, str] = {}
        self.fingerprints: dict[str, tuple[str, datetime]] = {}
        self.alerts: dict[str, str] = {}

    async def get_incident(self, incident_id: str) -> Incident | None:
        incident = self.incidents.get(incident_id)
        return incident.model_copy(deep=True) if incident is not None else None

    async def put_incident(self, incident: Incident) -> None:
        self.incidents[incident.id] = incident.model_copy(deep=True)

    async def find_by_entity(self, entity_key: str) -> str | None:
        return self.entities.get(entity_key)

    async def index_entity(self, entity_key: str, incident_id: str) -> None:
        self.entities[entity_key] = incident_id

    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None:
        return self.fingerprints.get(fingerprint)

    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None:
        self.fingerprints[fingerprint] = (incident_id, seen)

    async def get_alert_incident(self, alert_id: str) -> str | None:
        return self.alerts.get(alert_id)

    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None:
        self.alerts[alert_id] = incident_id
