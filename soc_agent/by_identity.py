"""A value built once per object and shared by identity, for the last few objects.

The object is held with its value, so its id cannot be reused while cached; the
objects and the values built from them are never mutated once built.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ByIdentity"]

_O = TypeVar("_O")
_V = TypeVar("_V")


class ByIdentity(Generic[_O, _V]):
    """`build(obj)`, built once per object among the last `size` asked for."""

    def __init__(self, build: Callable[[_O], _V], size: int = 16) -> None:
        self._build, self._size = build, size
        self._items: OrderedDict[int, tuple[_O, _V]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, obj: _O) -> _V:
        key = id(obj)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is obj:
                self._items.move_to_end(key)
                return hit[1]
        value = self._build(obj)
        self.hold(obj, value)
        return value

    def hold(self, obj: _O, value: _V) -> None:
        """Take `value` as what `build(obj)` gives, built some other way."""
        with self._lock:
            self._items[id(obj)] = (obj, value)
            self._items.move_to_end(id(obj))
            while len(self._items) > self._size:
                self._items.popitem(last=False)
