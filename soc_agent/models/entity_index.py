"""Which entity of a list goes by a name: `type:name` -> the position of the last
entity naming it, held for recent lists by their identity.

An incident's entities are one list object from alert to alert until an alert
changes them, and indexing its 1,225 entities again for each alert (correlation
grouping them, a decision resolving action targets) cost more than the rest of
either. Lists are never mutated once an incident holds them (changes are copies),
and the indexes handed out must not be mutated either.
"""

from __future__ import annotations

from collections.abc import Sequence

from soc_agent.by_identity import ByIdentity
from soc_agent.models.alert import Entity

__all__ = ["hold_key_index", "key_index"]


def _build(entities: Sequence[Entity]) -> dict[str, int]:
    return {key: i for i, e in enumerate(entities) for key in e.keys}


_HELD: ByIdentity[Sequence[Entity], dict[str, int]] = ByIdentity(_build, size=64)


def key_index(entities: Sequence[Entity]) -> dict[str, int]:
    """Every key of every entity -> the position of the last entity with that key."""
    return _HELD(entities)


def hold_key_index(entities: Sequence[Entity], index: dict[str, int]) -> None:
    """Hold `index` for `entities`, built some other way (it must equal `key_index`'s)."""
    _HELD.hold(entities, index)
