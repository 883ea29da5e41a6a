"""What a store remembers of its own writes, bounded: newest last, the oldest forgotten."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

KEPT = 4096
ALERTS_HELD = 1024  # alert models a store holds, read by id
DECISIONS_HELD = 256  # decision models a store holds, by their stored text


def keep(kept: OrderedDict[str, Any], key: str, value: Any, *, limit: int = KEPT) -> None:
    """Remember `value` under `key`, newest last, forgetting the oldest beyond `limit`."""
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > limit:
        kept.popitem(last=False)
