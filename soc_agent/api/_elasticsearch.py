"""What the API's Elasticsearch credential stores share: index creation, timestamps, errors.

The API's indices follow the store's layout rules (`soc_agent.store.elasticsearch`):
one primary shard, the configured replicas, a strict mapping, dates as
`date_nanos` so microseconds survive a round trip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from elasticsearch import ApiError, AsyncElasticsearch, BadRequestError, TransportError

from soc_agent.errors import StoreError

if TYPE_CHECKING:
    from soc_agent.store.config import ElasticsearchConfig

__all__ = [
    "DATE",
    "KEYWORD",
    "STORED_ONLY",
    "IndexStore",
    "ensure_index",
    "es_errors",
    "parse_ts",
    "ts",
]

KEYWORD: dict[str, Any] = {"type": "keyword"}
DATE: dict[str, Any] = {"type": "date_nanos"}
# Kept in _source for reading back, never indexed: nothing searches these fields.
STORED_ONLY: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}


def ts(value: datetime) -> str:
    """UTC ISO-8601 with microseconds and `Z`; a naive datetime is taken to be UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def ensure_index(
    client: AsyncElasticsearch,
    index: str,
    properties: dict[str, Any],
    *,
    number_of_replicas: int,
    refresh_interval: str,
) -> None:
    """Create `index` with its strict mapping unless it exists (safe from every replica)."""
    with es_errors(f"creating index {index}"):
        try:
            await client.indices.create(
                index=index,
                settings={
                    "number_of_shards": 1,
                    "number_of_replicas": number_of_replicas,
                    "refresh_interval": refresh_interval,
                },
                mappings={"dynamic": "strict", "properties": properties},
            )
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise


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
            index=f"{config.index_prefix}-{cls.SUFFIX}",
            number_of_replicas=config.number_of_replicas,
            refresh_interval=config.refresh_interval,
        )
        await store.ensure_index()
        return store

    async def ensure_index(self) -> None:
        await ensure_index(
            self._es,
            self.index,
            self.PROPERTIES,
            number_of_replicas=self._replicas,
            refresh_interval=self._refresh_interval,
        )
