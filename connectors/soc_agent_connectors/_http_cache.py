"""A bounded TTL cache for query results, with single-flight.

Keyed by capability and canonical arguments: an IP seen in fifty alerts is
looked up once per TTL. Concurrent misses for the same key share one vendor
call. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TTLCache", "cache_key"]


def cache_key(capability: str, args: Any) -> str:
    """Capability name plus arguments as canonical JSON (sorted keys, no whitespace)."""
    return capability + ":" + json.dumps(args, sort_keys=True, separators=(",", ":"))


class TTLCache:
    """At most `max_entries` results, each valid for its own TTL; least recently used evicted."""

    def __init__(self, max_entries: int, *, monotonic: Callable[[], float]) -> None:
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._monotonic() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return copy.deepcopy(value)

    def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        self._entries[key] = (self._monotonic() + ttl, copy.deepcopy(value))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def get_or_compute(
        self, key: str, ttl: float, compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The cached value, or the result of `compute()` (shared by concurrent callers)."""
        while True:
            cached = self.get(key)
            if cached is not None:
                self.hits += 1
                return cached
            pending = self._pending.get(key)
            if pending is None:
                break
            try:
                value = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and not (task and task.cancelling()):
                    continue  # the caller we waited on was cancelled, not us: try again
                raise
            self.hits += 1
            return copy.deepcopy(value)
        self.misses += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await compute()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # waiters re-raise it; nobody else needs to retrieve it
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(value)
            self.put(key, value, ttl)
            return copy.deepcopy(value)
        finally:
            del self._pending[key]

    def snapshot(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
