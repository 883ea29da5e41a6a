"""What the API's Elasticsearch credential stores share: one index each, and quiet errors.

The indices follow every soc-agent index's layout (`soc_agent.elasticsearch_setup`):
one primary shard, the configured replicas, a strict mapping, dates as
`date_nanos` so microseconds survive a round trip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Self

from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from soc_agent.elasticsearch_setup import ensure_index, index_name
from soc_agent.errors import StoreError

if TYPE_CHECKING:
    from soc_agent.store.config import ElasticsearchConfig

__all__ = ["IndexStore", "es_errors"]


@contextmanager
def es_errors(what: str) -> Iterator[None]:
    """Turn client errors into StoreError naming only the status and error type.

    An Elasticsearch error body can echo the request (document ids, field values);
    those are hashes of credentials here, so none of it goes into the message.
    """
    try:
        yield
    except ApiError as exc:
        raise StoreError(
            f"{what}: Elasticsearch answered HTTP {exc.meta.status} {exc.error}"
        ) from None
    except TransportError as exc:
        raise StoreError(f"{what}: cannot reach Elasticsearch ({type(exc).__name__})") from None


class IndexStore:
    """A store kept in one index, on the caller's client (not closed here).

    Call `ensure_index()` once at start-up (idempotent, safe from every replica),
    or get the store with `open()`, which does.
    """

    PROPERTIES: ClassVar[dict[str, Any]]
    SUFFIX: ClassVar[str]  # the index is <index_prefix>-<SUFFIX>

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        index: str,
        number_of_replicas: int = 1,
        refresh_interval: str = "1s",
    ) -> None:
        self._es = client
        self.index = index
        self._replicas = number_of_replicas
        self._refresh_interval = refresh_interval

    @classmethod
    async def open(cls, client: AsyncElasticsearch, config: ElasticsearchConfig) -> Self:
        store = cls(
            client,
            index=index_name(config.index_prefix, cls.SUFFIX),
            number_of_replicas=config.number_of_replicas,
            refresh_interval=config.refresh_interval,
        )
        await store.ensure_index()
        return store

    async def ensure_index(self) -> None:
        with es_errors(f"creating index {self.index}"):
            await ensure_index(
                self._es,
                self.index,
                self.PROPERTIES,
                number_of_replicas=self._replicas,
                refresh_interval=self._refresh_interval,
            )
