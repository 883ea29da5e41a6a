"""A runtime flag holding several values (per-action autonomy caps) is updated as a
whole, atomically: two admins capping two actions at once from two machines keep
both caps. The store's `update_flag` reads and writes in one transaction (SQLite)
or by compare-and-set (Elasticsearch), never read, then write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from soc_agent.audit import SQLiteAuditLog
from soc_agent.models import AutonomyLevel
from soc_agent.pipeline.controls import set_action_autonomy
from soc_agent.policy import ACTION_AUTONOMY_FLAG, PolicyConfig
from soc_agent.store import SQLiteStore
from soc_agent.store.elasticsearch import ElasticsearchStore

ACTIONS = [f"action_{i}" for i in range(8)]


@pytest.fixture(params=["sqlite", "elasticsearch"])
def two_machines(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prefix: str,
    es_store: ElasticsearchStore,
    es_clients: Callable[[], AsyncElasticsearch],
) -> Iterator[list[Any]]:
    """Two stores on one state, as two machines (or processes) hold them."""
    if request.param == "elasticsearch":
        yield [es_store, ElasticsearchStore(es_clients(), prefix=prefix, number_of_replicas=0)]
        return
    stores = [SQLiteStore(tmp_path / "shared.db") for _ in range(2)]
    yield stores
    for store in stores:
        store.close()


async def _cap_all_at_once(
    machines: list[Any], audit: SQLiteAuditLog, level: AutonomyLevel | None
) -> None:
    """Every action capped (None: lifted) at once, alternately through each machine."""
    await asyncio.gather(
        *(
            set_action_autonomy(
                machines[i % 2],
                audit,
                PolicyConfig(),
                action,
                level,
                actor=f"admin:{i % 2}",
                reason=None,
                at=datetime(2026, 12, 6, tzinfo=UTC),
            )
            for i, action in enumerate(ACTIONS)
        )
    )


async def test_caps_set_at_once_from_two_machines_are_all_kept(
    two_machines: list[Any], tmp_path: Path
) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    await _cap_all_at_once(two_machines, audit, AutonomyLevel.COLLABORATOR)
    assert await two_machines[0].get_flag(ACTION_AUTONOMY_FLAG) == dict.fromkeys(ACTIONS, 2)
    await _cap_all_at_once(two_machines, audit, None)  # lifting them at once leaves none
    assert await two_machines[1].get_flag(ACTION_AUTONOMY_FLAG) == {}


async def test_update_flag_sees_the_stored_value_and_returns_the_new_one(
    two_machines: list[Any],
) -> None:
    store = two_machines[0]
    seen: list[Any] = []

    def add(value: Any) -> Any:
        seen.append(value)
        return [*(value or []), len(seen)]

    assert await store.update_flag("list", add) == [1]
    assert await two_machines[1].update_flag("list", add) == [1, 2]
    assert seen[:1] == [None] and seen[-1] == [1]
    assert await store.get_flag("list") == [1, 2]
