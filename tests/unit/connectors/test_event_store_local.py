"""The offline event store's search: the time window, the filters, the order events come in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soc_agent_connectors.event_store_local import (
    LocalEventStore,
    LocalEventStoreConfig,
    SearchInput,
)

AROUND = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _store(tmp_path: Path, events: list[dict[str, Any]]) -> LocalEventStore:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return LocalEventStore(LocalEventStoreConfig(path=str(path)))


def _event(at: Any, host: str = "ws-1", **fields: Any) -> dict[str, Any]:
    return {"@timestamp": at, "host": {"name": host}, **fields}


async def _search(store: LocalEventStore, **args: Any) -> Any:
    query = {"entity_type": "host", "value": "ws-1", "around": AROUND, "window_minutes": 10}
    return await store.search(SearchInput(**(query | args)))


async def test_the_window_is_inclusive_and_events_keep_their_file_order(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        [
            _event("2026-03-01T12:10:00Z", n=1),  # the window's end, inclusive
            _event("2026-03-01T11:49:59Z", n=2),  # a second early
            _event("2026-03-01T11:50:00+00:00", n=3),  # its start, inclusive
            _event("2026-03-01T13:00:00+01:00", n=4),  # 12:00 UTC
            _event("2026-03-01T12:10:01Z", n=5),  # a second late
            _event("2026-03-01T12:05:00Z", host="ws-2", n=6),  # another host
            _event("2026-03-01T12:00:00Z", host="WS-1", n=7),  # any case
            _event("2026-03-01T12:00:00Z", host="ws-1.corp", n=8),  # equal, not a substring
        ],
    )
    found = await _search(store)
    assert [e["n"] for e in found.events] == [1, 3, 4, 7]
    assert found.total == 4
    limited = await _search(store, limit=2)
    assert [e["n"] for e in limited.events] == [1, 3] and limited.total == 4


async def test_events_without_a_usable_time_are_never_found(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        [
            _event(None, n=1),
            _event("yesterday", n=2),
            _event(1772366400, n=3),
            {"host": {"name": "ws-1"}, "n": 4},
            _event("2026-03-01T12:00:00", n=5),  # no offset: ECS times are UTC
        ],
    )
    found = await _search(store)
    assert [e["n"] for e in found.events] == [5]


async def test_filters_and_buckets(tmp_path: Path) -> None:
    at = "2026-03-01T12:00:00Z"
    store = _store(
        tmp_path,
        [
            _event(at, event={"category": ["authentication"], "outcome": "failure"}, u="a"),
            _event(at, event={"category": "authentication", "outcome": "success"}, u="b"),
            _event(at, **{"event.category": "network", "event.outcome": "failure"}, u="c"),
            _event(at, event={"category": ["authentication"], "outcome": "failure"}, u="a"),
        ],
    )
    failed = await _search(store, category="authentication", outcome="failure", aggregate_by="u")
    assert failed.total == 2 and failed.buckets == {"a": 2} and failed.distinct == 1
    flat = await _search(store, outcome="failure", aggregate_by="u")
    assert flat.buckets == {"a": 2, "c": 1} and flat.distinct == 2
