"""Which credential stores a backend gets: the one place that chooses by `store_backend`.

SQLite keeps tokens and sessions in tables of the store file; Elasticsearch
in indices of their own, on the backend's client (borrowed, not opened again),
so every API replica sees the same credentials. The Elasticsearch modules are
imported only when that backend is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import TYPE_CHECKING

from soc_agent.api.credentials.sessions_base import SessionStore
from soc_agent.api.credentials.sessions_sqlite import SQLiteSessionStore
from soc_agent.api.credentials.tokens_base import TokenStore
from soc_agent.api.credentials.tokens_sqlite import SQLiteTokenStore
from soc_agent.runtime.backend import Backend

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

    from soc_agent.store.config import ElasticsearchConfig

__all__ = ["open_session_store", "open_token_store"]


@asynccontextmanager
async def open_session_store(backend: Backend) -> AsyncIterator[SessionStore]:
    """The session store of `backend` (its index created if missing), closed on the way out."""
    if backend.kind == "elasticsearch":
        from soc_agent.api.credentials.sessions_elasticsearch import ElasticsearchSessionStore

        yield await ElasticsearchSessionStore.open(*_elasticsearch(backend))
        return
    with closing(SQLiteSessionStore(backend.settings.store)) as store:
        yield store


@asynccontextmanager
async def open_token_store(backend: Backend) -> AsyncIterator[TokenStore]:
    """The token store of `backend` (its index created if missing), closed on the way out."""
    if backend.kind == "elasticsearch":
        from soc_agent.api.credentials.tokens_elasticsearch import ElasticsearchTokenStore

        yield await ElasticsearchTokenStore.open(*_elasticsearch(backend))
        return
    with closing(SQLiteTokenStore(backend.settings.store)) as store:
        yield store


def _elasticsearch(backend: Backend) -> tuple[AsyncElasticsearch, ElasticsearchConfig]:
    assert backend.es is not None
    return backend.es, backend.settings.elasticsearch
