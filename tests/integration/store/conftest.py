"""The Elasticsearch store and audit log against the real Maven-built node.

Each test gets its own index prefix and an async client, and the indices are
deleted afterwards, so tests neither see nor disturb each other's documents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch

from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
from soc_agent.store import SQLiteStore
from soc_agent.store.elasticsearch import ElasticsearchStore
from tests.infra.fixtures import elasticsearch_url

__all__ = ["elasticsearch_url"]


@pytest.fixture
def prefix() -> str:
    return f"soc-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def es(elasticsearch_url: str, prefix: str) -> AsyncIterator[AsyncElasticsearch]:
    async with AsyncElasticsearch(elasticsearch_url, request_timeout=30) as client:
        yield client
        # Wildcard deletes are refused (destructive_requires_name): name each index.
        names = list(await client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            await client.indices.delete(index=",".join(names))


@pytest.fixture
async def es_store(es: AsyncElasticsearch, prefix: str) -> ElasticsearchStore:
    # A short refresh interval keeps `refresh="wait_for"` writes quick in tests.
    store = ElasticsearchStore(es, prefix=prefix, number_of_replicas=0, refresh_interval="100ms")
    await store.ensure_indices()
    return store


@pytest.fixture
async def slow_es_store(es: AsyncElasticsearch, prefix: str) -> ElasticsearchStore:
    """A store whose indices refresh every 30 s: a write or search that waited for a
    refresh would show, where `es_store`'s 100 ms would hide it."""
    store = ElasticsearchStore(
        es, prefix=f"{prefix}-slow", number_of_replicas=0, refresh_interval="30s"
    )
    await store.ensure_indices()
    return store


@pytest.fixture(params=["sqlite", "sqlite-inline", "elasticsearch"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, es_store: ElasticsearchStore
) -> AsyncIterator[SQLiteStore | ElasticsearchStore]:
    """Both implementations: every behaviour is checked on SQLite (the reference, also
    with its statements on the event loop, as `soc-agent run` opens it) and ES."""
    if request.param == "elasticsearch":
        yield es_store
        return
    reference = SQLiteStore(tmp_path / "reference.db", inline=request.param == "sqlite-inline")
    yield reference
    reference.close()


@pytest.fixture
async def audit_log(es: AsyncElasticsearch, prefix: str) -> ElasticsearchAuditLog:
    log = ElasticsearchAuditLog(es, index=f"{prefix}-audit", number_of_replicas=0)
    await log.ensure_index()
    return log


@pytest.fixture
async def es_clients(
    elasticsearch_url: str, es: AsyncElasticsearch
) -> AsyncIterator[Callable[[], AsyncElasticsearch]]:
    """Makes extra clients, one per simulated machine; closed before `es` cleans the indices."""
    made: list[AsyncElasticsearch] = []

    def make() -> AsyncElasticsearch:
        client = AsyncElasticsearch(elasticsearch_url, request_timeout=30)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
