"""Which entity of a list goes by a name: `type:name` -> the position of the last
entity naming it, held for recent lists by their identity.

An incident's entities are one list object from alert to alert until an alert
changes them, and indexing its 1,225 entities again for each alert (correlation
grouping them, a decision resolving action targets) cost more than the rest of
either. Lists are never mutated once an incident holds them (changes are copies),
and the indexes handed out must not be mutated either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from soc_agent.models.alert import Entity

__all__ = ["hold_key_index", "key_index"]


class _Held:
    def __init__(self, size: int = 64) -> None:
        self._lists: OrderedDict[int, tuple[Sequence[Entity], dict[str, int]]] = OrderedDict()
        self._size = size

    def get(self, entities: Sequence[Entity]) -> dict[str, int] | None:
        held = self._lists.get(id(entities))
        if held is None or held[0] is not entities:
            return None
        self._lists.move_to_end(id(entities))
        return held[1]

    def hold(self, entities: Sequence[Entity], index: dict[str, int]) -> None:
        self._lists[id(entities)] = (entities, index)
        self._lists.move_to_end(id(entities))
        while len(self._lists) > self._size:
            self._lists.popitem(last=False)


_HELD = _Held()


def key_index(entities: Sequence[Entity]) -> dict[str, int]:
    """Every key of every entity -> the position of the last entity with that key."""
    index = _HELD.get(entities)
    if index is None:
        index = {key: i for i, e in enumerate(entities) for key in e.keys}
        _HELD.hold(entities, index)
    return index


def hold_key_index(entities: Sequence[Entity], index: dict[str, int]) -> None:
    """Hold `index` for `entities`, built some other way (it must equal `key_index`'s)."""
    _HELD.hold(entities, index)
