"""Grouping entities reuses each incident's key index from alert to alert; the result
must be the one indexing afresh gives, whatever was held."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.by_identity import ByIdentity
from soc_agent.correlate import correlator
from soc_agent.models import Entity, EntityType, entity_index

_NAMES = [f"u{i}" for i in range(8)]


@st.composite
def _entity(draw: st.DrawFn) -> Entity:
    value = draw(st.sampled_from(_NAMES))
    aliases = draw(
        st.dictionaries(st.sampled_from(["sam", "upn", "sid"]), st.sampled_from(_NAMES), max_size=2)
    )
    return Entity(type=EntityType.USER, value=value, aliases=aliases)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_entity(), min_size=1, max_size=4), min_size=1, max_size=12))
def test_held_indexes_give_what_fresh_ones_give(alerts: list[list[Entity]]) -> None:
    entity_index._HELD = ByIdentity(entity_index._build, size=64)
    held: list[Entity] = []
    fresh: list[Entity] = []
    for entities in alerts:
        held, gained_held = correlator._union(held, entities)
        kept = entity_index._HELD
        entity_index._HELD = ByIdentity(entity_index._build, size=64)  # nothing held: index afresh
        try:
            fresh, gained_fresh = correlator._union(list(fresh), entities)
        finally:
            entity_index._HELD = kept
        assert held == fresh and gained_held == gained_fresh
        names = sum(1 + len(e.aliases) for e in fresh)
        assert gained_fresh >= 0 and names >= gained_fresh
