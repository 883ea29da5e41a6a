"""Grouping entities reuses each incident's key index from alert to alert; the result
must be the one indexing afresh gives, whatever was held."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.by_identity import ByIdentity
from soc_agent.correlate import correlator
from soc_agent.models import Entity, EntityType, entity_index
from soc_agent.models.alert import merge_aliases

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


def _reference(current: list[Entity], new: list[Entity]) -> tuple[list[Entity], int]:
    """The union as first written: a fresh list and index for every alert."""
    out = list(current)
    where: dict[str, int] = {}
    for i, entity in enumerate(current):
        for key in entity.keys:
            where[key] = i  # the last entity naming a key
    gained = 0
    for entity in new:
        i = next((where[k] for k in entity.keys if k in where), None)
        if i is None:
            i = len(out)
            out.append(entity)
            gained += 1 + len(entity.aliases)
        else:
            merged = merge_aliases(out[i], entity)
            gained += len(merged.aliases) - len(out[i].aliases)
            out[i] = merged
        for key in out[i].keys:
            where.setdefault(key, i)
    return out, gained


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_entity(), min_size=1, max_size=4), min_size=1, max_size=12))
def test_the_union_is_the_plain_one_and_unchanged_when_nothing_is_new(
    alerts: list[list[Entity]],
) -> None:
    """Copied only on a change: an alert whose entities add no name gives back the very
    list it was given (what is held for it still serves)."""
    held: list[Entity] = []
    for entities in alerts:
        expected = _reference(held, entities)
        before = held
        held, gained = correlator._union(held, entities)
        assert (held, gained) == expected
        assert (held is before) == (expected[0] == before)
