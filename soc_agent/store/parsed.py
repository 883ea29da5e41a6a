"""Validated models reused while their stored JSON is unchanged.

Validating a large incident (hundreds of alert ids, a thousand entities) from
JSON cost more CPU than everything else one alert's correlation does, and the
same unchanged document is read several times per alert (correlation, the
decision, the history). A document byte-for-byte equal to the one a model was
parsed from (or written as) gives back that model. Models read from a store
are treated as immutable everywhere (changes are `model_copy`), so sharing
one is safe; a different document is parsed afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from pydantic import BaseModel

__all__ = ["ParsedCache"]

_M = TypeVar("_M", bound=BaseModel)


class ParsedCache(Generic[_M]):
    """The last `size` models of one type, by key, with the JSON each stands for."""

    def __init__(self, model: type[_M], size: int = 32) -> None:
        self._model, self._size = model, size
        self._items: OrderedDict[str, tuple[str, _M]] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, key: str, doc: str) -> _M:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == doc:
                self._items.move_to_end(key)
                return hit[1]
        model = self._model.model_validate_json(doc)
        self.remember(key, doc, model)
        return model

    def remember(self, key: str, doc: str, model: _M) -> None:
        with self._lock:
            self._items[key] = (doc, model)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
