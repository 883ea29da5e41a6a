"""`incident.entities` as expressions see it stays exact while it is reused across versions."""

from __future__ import annotations

from datetime import UTC, datetime

from soc_agent.models import Entity, EntityType, Incident, Severity
from soc_agent.models.alert import merge_aliases
from soc_agent.playbooks.context import CONTEXT_MAX_ENTITIES, incident_context

AT = datetime(2026, 3, 1, tzinfo=UTC)


def _host(n: int) -> Entity:
    return Entity(type=EntityType.HOST, value=f"ws-{n}")


def _incident(entities: list[Entity]) -> Incident:
    return Incident(
        id="incident:views",
        title="t",
        severity=Severity.HIGH,
        alert_ids=["a1"],
        entities=entities,
        first_seen=AT,
        last_seen=AT,
    )


def _fresh(incident: Incident) -> list[dict[str, str]]:
    return [
        {"type": e.type.value, "value": e.value} for e in incident.entities[:CONTEXT_MAX_ENTITIES]
    ]


def test_each_version_of_a_growing_incident_sees_exactly_its_entities() -> None:
    first = _incident([_host(1), _host(2)])
    grown = first.model_copy(update={"entities": [*first.entities, _host(3)]})
    renamed = merge_aliases(grown.entities[1], Entity(type=EntityType.HOST, value="ws-2.corp"))
    assert renamed is not grown.entities[1]
    merged = grown.model_copy(
        update={"entities": [grown.entities[0], renamed, grown.entities[2], _host(4)]}
    )
    huge = merged.model_copy(
        update={"entities": [*merged.entities, *(_host(n) for n in range(5, 300))]}
    )
    shrunk = _incident([_host(9)])  # another writer's version, sharing nothing
    views = []
    for version in (first, grown, merged, huge, huge, shrunk):
        seen = incident_context(version)["entities"]
        assert seen == _fresh(version)
        views.append(seen)
    assert len(views[3]) == CONTEXT_MAX_ENTITIES
    # The views of entities a version shares with the last one are the same objects.
    assert views[1][0] is views[0][0] and views[1][1] is views[0][1]
    assert views[2][0] is views[1][0] and views[2][1] is not views[1][1]
