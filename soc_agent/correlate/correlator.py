"""Incident correlation: deduplicate alerts and group related ones into incidents.

All time comparisons use the alert's event time (`alert.created_at`), never the
wall clock, so replaying a day of alerts gives the same incidents as living it.
For each alert, the first rule that applies wins:

1. **redelivered** - the alert id was already correlated: its incident is
   returned unchanged. Feeding the same alerts twice changes nothing.
2. **duplicate** - an alert with the same fingerprint (format, rule, entity
   keys; see `fingerprint`) was last seen within `duplicate_window_seconds` of
   this alert's time (either side, so out-of-order repeats count too). The
   fingerprint's incident gets `duplicate_count += 1` and its `first_seen`/
   `last_seen` widened to cover the alert; the alert id is NOT added to
   `alert_ids`. The window slides: it is measured from the latest sighting. A
   window of 0 disables duplicate suppression.
3. **grouped** - a pivot of the alert (an entity's key or the key of any of
   its aliases, so `mokafor`, `CORP\\mokafor` and the UPN of one person all
   link) is indexed to an incident whose activity span is within
   `window_seconds` of the alert time, i.e.
   `first_seen - window <= t <= last_seen + window`. For alerts at or after
   `last_seen` this is `t - last_seen <= window`; the lower bound lets an
   out-of-order alert slightly older than `first_seen` (or inside the span)
   join too. The alert is added, entities are unioned (one sharing any name
   with an incident entity adds its names to that entity as aliases; the
   first value seen stays), severity becomes the maximum, the span widens,
   and the alert's pivots are indexed to the incident. If several incidents
   match, the one seen most recently (latest `last_seen`, then greatest id)
   wins; incidents are never merged.
4. **new** - otherwise a new incident opens, titled after the alert (or its
   rule when the title is empty), with the alert's severity. Its id comes
   from `id_factory`, by default `"inc-" + sha256(alert.id)[:16]`, so
   replicas that see the same alert agree on the id.

Pivots are the alert's entities whose type is in `entity_types` (processes
are excluded by default: command lines rarely identify an attack) and whose
key (`type:value`) is not in `ignore_values` (resolvers, proxies, scanners).
Non-pivot entities are still recorded on the incident; they just never link.
An incident holding `max_alerts_per_incident` alerts is full and is not extended
either, so an alert storm sharing one entity splits into bounded incidents
instead of one whose every re-decision grows without limit.

An incident outside the window is never extended: a later alert on the same
entity starts a new incident, which takes over the entity's index.

The entity index points each pivot at the most recently seen incident that
holds it: an out-of-order alert that opens an older incident does not steal
pivots from a newer one. The fingerprint index likewise keeps the latest
sighting.

Writes happen in the order incident, entity index, fingerprint, alert index,
so a crash before the last write is repaired by redelivery: a grouped or new
alert already present in its incident is recognised as redelivered. (A
duplicate counted just before a crash may be counted twice.)

Within one process, a Correlator over a batched state (SQLite) runs
correlations on unrelated alerts at once: each takes its turn on the keys it
reads and writes (its fingerprint and pivots, `turns.KeyTurns`, in arrival
order), and when two reach one incident through different keys, the one that
writes second sees that an incident it read was written since, and starts
over once that write is done. The outcome is always that of some serial
order; only such a pair (no shared key, one incident) may go in the other
order than they arrived. Over any other state it serialises
its own calls. Processes sharing one state either take turns (a lock around
`correlate`) or use `ConcurrentCorrelator` (see `concurrent`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from soc_agent_connectors import DATA_PATH

from soc_agent.correlate.fingerprint import fingerprint
from soc_agent.correlate.state import (
    BatchedCorrelationState,
    CorrelationSnapshot,
    CorrelationState,
    CorrelationWrites,
)
from soc_agent.correlate.turns import KeyTurns
from soc_agent.models import Alert, Entity, EntityType, Incident
from soc_agent.models.alert import merge_aliases
from soc_agent.models.entity_index import hold_key_index, key_index
from soc_agent.models.ids import incident_id

__all__ = [
    "DEFAULT_PIVOT_TYPES",
    "CorrelationConfig",
    "CorrelationResult",
    "Correlator",
    "Outcome",
    "default_incident_id",
]

Outcome = Literal["new", "grouped", "duplicate", "redelivered"]

DEFAULT_PIVOT_TYPES: tuple[EntityType, ...] = (
    EntityType.HOST,
    EntityType.USER,
    EntityType.IP,
    EntityType.DOMAIN,
    EntityType.URL,
    EntityType.FILE_HASH,
    EntityType.EMAIL,
    EntityType.CLOUD_RESOURCE,
)


class CorrelationConfig(BaseModel):
    """How alerts are grouped and deduplicated."""

    window_seconds: int = Field(default=3600, gt=0, description="grouping window")
    duplicate_window_seconds: int = Field(
        default=3600, ge=0, description="duplicate suppression window; 0 disables it"
    )
    entity_types: list[EntityType] = Field(
        default_factory=lambda: list(DEFAULT_PIVOT_TYPES),
        description="entity types used as pivots for grouping",
    )
    ignore_values: list[str] = Field(
        default_factory=list,
        description='entity keys never used as pivots, e.g. "ip:8.8.8.8"',
    )
    max_alerts_per_incident: int = Field(
        default=500,
        ge=1,
        description="a full incident takes no more alerts; related ones open a new incident",
    )
    identity_file: Path | None = Field(
        default=None,
        description="an asset inventory (the local inventory's format) whose entries' "
        "`aliases:` say which names are one user or host, read at start-up",
        json_schema_extra=DATA_PATH,
    )

    @field_validator("ignore_values")
    @classmethod
    def _normalise_keys(cls, values: list[str]) -> list[str]:
        """Normalise like entities are ("host:WS-01" -> "host:ws-01") so keys compare equal."""
        out: list[str] = []
        for raw in values:
            key = Entity.from_key(raw).key
            if key not in out:
                out.append(key)
        return out


@dataclass(frozen=True)
class CorrelationResult:
    """The incident an alert ended up in and how it got there."""

    incident: Incident
    outcome: Outcome
    alert_id: str
    # For "grouped": the alert added an entity, a detection rule or a higher severity.
    # An alert that adds nothing need not trigger a new investigation.
    new_information: bool = True


def default_incident_id(alert: Alert) -> str:
    """`inc-` + the first 16 hex digits of sha256(alert id): deterministic across replicas."""
    return incident_id(alert.id)


class Correlator:
    """Applies the rules in the module docstring over a pluggable state."""

    def __init__(
        self,
        state: CorrelationState,
        config: CorrelationConfig,
        *,
        id_factory: Callable[[Alert], str] | None = None,
    ) -> None:
        self._state = state
        # Checked once: isinstance against a runtime protocol inspects every member.
        self._batched = state if isinstance(state, BatchedCorrelationState) else None
        self._config = config
        self._id_factory = id_factory or default_incident_id
        self._window = timedelta(seconds=config.window_seconds)
        self._duplicate_window = timedelta(seconds=config.duplicate_window_seconds)
        self._pivot_types = frozenset(config.entity_types)
        self._ignored = frozenset(config.ignore_values)
        # Each correlation is a read-modify-write over several keys.
        self._lock = asyncio.Lock()
        self._turns = KeyTurns()
        # While correlations are in flight: per incident, the serial of its last write
        # and when that write is done (cleared when none is in flight, so memory is flat).
        self._written: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._serial = 0
        self._in_flight = 0
        self.restarts = 0  # correlations started over because their incident was written

    @property
    def config(self) -> CorrelationConfig:
        return self._config

    def pivots(self, alert: Alert) -> list[str]:
        """The alert's entity keys used for grouping, every alias's included, sorted and
        distinct. An entity any of whose names is ignored links through none of them."""
        return sorted(
            {
                key
                for e in alert.entities
                if e.type in self._pivot_types and self._ignored.isdisjoint(e.keys)
                for key in e.keys
            }
        )

    async def correlate(self, alert: Alert) -> CorrelationResult:
        """Place one alert: redelivered, duplicate, grouped or new (see module docstring).

        A state that can (`BatchedCorrelationState`) serves it in two round trips:
        everything the rules may read, fetched at once, then every write in one
        transaction, so a crash leaves all of a correlation or none of it.
        """
        state = self._batched
        if state is None:
            async with self._lock:
                return await self._correlate(alert, self._state)
        fp, pivots = fingerprint(alert), self.pivots(alert)
        self._in_flight += 1
        try:
            async with self._turns.hold_all([f"fp:{fp}", *(f"entity:{k}" for k in pivots)]):
                while True:
                    started = self._serial
                    snapshot = await state.correlation_snapshot(
                        alert.id, fp, pivots, [self._id_factory(alert)]
                    )
                    view = _SnapshotView(snapshot, state)
                    result = await self._correlate(alert, view)
                    touched = {*snapshot.incidents, *(i.id for i in view.writes.incidents)}
                    newer = [
                        seen[1]
                        for i in touched
                        if (seen := self._written.get(i)) is not None and seen[0] > started
                    ]
                    if not newer:
                        break
                    self.restarts += 1
                    await asyncio.wait(newer)
                if any(a == alert.id for a, _ in view.writes.alerts):
                    view.writes.placed = alert
                await self._apply(state, view.writes)
                return result
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._written.clear()

    async def _apply(self, state: BatchedCorrelationState, writes: CorrelationWrites) -> None:
        """Write, first marking the incidents written (before yielding to the loop)."""
        self._serial += 1
        done = asyncio.get_running_loop().create_future()
        for incident in writes.incidents:
            self._written[incident.id] = (self._serial, done)
        try:
            await state.apply_correlation(writes)
        finally:
            done.set_result(None)

    async def _correlate(self, alert: Alert, state: CorrelationState) -> CorrelationResult:
        """The rules, over `state`; callers decide how correlations are serialised.

        On every path that writes an incident, `put_incident` is the first
        write, so a state refusing it (`IncidentChanged`) leaves nothing changed.
        """
        at = alert.created_at

        known_id = await state.get_alert_incident(alert.id)
        if known_id is not None:
            known = await state.get_incident(known_id)
            if known is not None:
                return CorrelationResult(known, "redelivered", alert.id)
            # The index names an incident the state no longer has: correlate afresh.

        fp = fingerprint(alert)
        sighting = await state.get_fingerprint(fp)
        if sighting is not None:
            seen_id, last_seen = sighting
            incident = await state.get_incident(seen_id)
            if incident is not None and alert.id in incident.alert_ids:
                return await self._recovered(alert, incident, state)
            if (
                incident is not None
                and self._duplicate_window
                and abs(at - last_seen) <= self._duplicate_window
            ):
                return await self._count_duplicate(alert, incident, fp, last_seen, state)

        pivots = self.pivots(alert)
        owners: dict[str, Incident] = {}
        candidates: dict[str, Incident] = {}
        for key in pivots:
            owner_id = await state.find_by_entity(key)
            if owner_id is None:
                continue
            owner = candidates.get(owner_id) or await state.get_incident(owner_id)
            if owner is None:
                continue
            candidates[owner.id] = owner
            owners[key] = owner

        matching = [
            inc
            for inc in candidates.values()
            if self._in_window(inc, at)
            and len(inc.alert_ids) < self._config.max_alerts_per_incident
        ]
        outcome: Outcome
        if matching:
            target = max(matching, key=lambda inc: (inc.last_seen, inc.id))
            if alert.id in target.alert_ids:
                return await self._recovered(alert, target, state)
            incident, new_names = _extend(target, alert, fp)
            outcome = "grouped"
            novel = (
                new_names > 0  # a new alias is new information
                or len(incident.rules) > len(target.rules)
                or incident.severity != target.severity
            )
        else:
            incident_id = self._id_factory(alert)
            existing = await state.get_incident(incident_id)
            if existing is not None and alert.id in existing.alert_ids:
                return await self._recovered(alert, existing, state)
            incident = _open(incident_id, alert, fp)
            outcome = "new"
            novel = True

        await state.put_incident(incident)
        for key in pivots:
            owner = owners.get(key)
            if owner is not None and owner.id == incident.id:
                continue  # already indexed here: a write would change nothing
            if owner is None or owner.last_seen <= incident.last_seen:
                await state.index_entity(key, incident.id)
        if sighting is None or at >= sighting[1]:
            await state.put_fingerprint(fp, incident.id, at)
        await state.put_alert_incident(alert.id, incident.id)
        return CorrelationResult(incident, outcome, alert.id, new_information=novel)

    async def _recovered(
        self, alert: Alert, incident: Incident, state: CorrelationState
    ) -> CorrelationResult:
        """The alert is in the incident but its alert index write was lost (a crash)."""
        await state.put_alert_incident(alert.id, incident.id)
        return CorrelationResult(incident, "redelivered", alert.id, new_information=False)

    async def _count_duplicate(
        self,
        alert: Alert,
        incident: Incident,
        fp: str,
        last_seen: datetime,
        state: CorrelationState,
    ) -> CorrelationResult:
        at = alert.created_at
        updated = incident.model_copy(
            update={
                "duplicate_count": incident.duplicate_count + 1,
                "first_seen": min(incident.first_seen, at),
                "last_seen": max(incident.last_seen, at),
            }
        )
        await state.put_incident(updated)
        await state.put_fingerprint(fp, incident.id, max(last_seen, at))
        await state.put_alert_incident(alert.id, incident.id)
        return CorrelationResult(updated, "duplicate", alert.id, new_information=False)

    def _in_window(self, incident: Incident, at: datetime) -> bool:
        return incident.first_seen - self._window <= at <= incident.last_seen + self._window


class _SnapshotView:
    """A `CorrelationState` answering reads from a snapshot (the state itself for anything
    the snapshot did not fetch) and keeping writes for one transaction."""

    def __init__(self, snapshot: CorrelationSnapshot, state: CorrelationState) -> None:
        self._snap, self._state = snapshot, state
        self.writes = CorrelationWrites()

    async def get_incident(self, incident_id: str) -> Incident | None:
        if incident_id in self._snap.incidents:
            return self._snap.incidents[incident_id]
        return await self._state.get_incident(incident_id)

    async def put_incident(self, incident: Incident) -> None:
        self.writes.incidents.append(incident)
        self._snap.incidents[incident.id] = incident

    async def find_by_entity(self, entity_key: str) -> str | None:
        if entity_key in self._snap.pivots:
            return self._snap.owners.get(entity_key)
        return await self._state.find_by_entity(entity_key)

    async def index_entity(self, entity_key: str, incident_id: str) -> None:
        self.writes.entities.append((entity_key, incident_id))
        if entity_key in self._snap.pivots:
            self._snap.owners[entity_key] = incident_id

    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None:
        if fingerprint == self._snap.fingerprint:
            return self._snap.sighting
        return await self._state.get_fingerprint(fingerprint)

    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None:
        self.writes.fingerprints.append((fingerprint, incident_id, seen))
        if fingerprint == self._snap.fingerprint:
            self._snap.sighting = (incident_id, seen)

    async def get_alert_incident(self, alert_id: str) -> str | None:
        if alert_id == self._snap.alert_id:
            return self._snap.alert_incident
        return await self._state.get_alert_incident(alert_id)

    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None:
        self.writes.alerts.append((alert_id, incident_id))
        if alert_id == self._snap.alert_id:
            self._snap.alert_incident = incident_id


def _open(incident_id: str, alert: Alert, fp: str) -> Incident:
    return Incident(
        id=incident_id,
        title=alert.title or alert.rule.name,
        severity=alert.severity,
        alert_ids=[alert.id],
        entities=_union([], alert.entities)[0],
        fingerprints=[fp],
        rules=[alert.rule_key],
        first_seen=alert.created_at,
        last_seen=alert.created_at,
    )


def _extend(incident: Incident, alert: Alert, fp: str) -> tuple[Incident, int]:
    """The incident with the alert added, and how many names its entities gained."""
    severity = max(incident.severity, alert.severity, key=lambda s: s.rank)
    fingerprints = list(incident.fingerprints)
    if fp not in fingerprints:
        fingerprints.append(fp)
    rules = (
        incident.rules
        if alert.rule_key in incident.rules
        else [
            *incident.rules,
            alert.rule_key,
        ]
    )
    entities, new_names = _union(incident.entities, alert.entities)
    extended = incident.model_copy(
        update={
            "rules": rules,
            "severity": severity,
            "alert_ids": [*incident.alert_ids, alert.id],
            "entities": entities,
            "fingerprints": fingerprints,
            "first_seen": min(incident.first_seen, alert.created_at),
            "last_seen": max(incident.last_seen, alert.created_at),
        }
    )
    return extended, new_names


def _union(current: list[Entity], new: list[Entity]) -> tuple[list[Entity], int]:
    """Entities of both lists in order of first appearance; an entity sharing any name
    with one already there adds its names to that one as aliases, keeping its value (so
    decisions already taken on that value keep their target). Also how many names
    (values and aliases) the list gained. When nothing changes, `current` itself (so
    what is held for it, its key index and entity views, still serves)."""
    before = key_index(current)
    out = current  # copied on the first change: most alerts add nothing to a big incident
    added: dict[str, int] = {}  # keys `before` lacks, at the first entity naming them
    gained, changed = 0, set()
    for entity in new:
        i = next((p for k in entity.keys if (p := before.get(k, added.get(k))) is not None), None)
        if i is None:
            out = out if out is not current else list(current)
            i = len(out)
            out.append(entity)
            gained += 1 + len(entity.aliases)
        else:
            merged = merge_aliases(out[i], entity)
            if merged is out[i]:
                continue  # no new name: nothing of it changes
            out = out if out is not current else list(current)
            gained += len(merged.aliases) - len(out[i].aliases)
            out[i] = merged
        changed.add(i)
        for key in out[i].keys:
            if key not in before:
                added.setdefault(key, i)
    if out is current:
        return current, 0
    # The index of `out` as `key_index` would build it (the last entity naming a key
    # wins): entities only gain names, so the changed ones may only raise positions.
    after = dict(before)
    for i in changed:
        for key in out[i].keys:
            if after.get(key, -1) < i:
                after[key] = i
    hold_key_index(out, after)
    return out, gained
