"""What every soc-agent index in Elasticsearch shares: names, creation, document ids, times.

The store, the leases, the audit log and the API's credential stores each keep
their documents in `<index_prefix>-<suffix>` indices, created at start-up
(idempotently, so every worker and replica may race to do it) with one primary
shard, the configured replicas and a strict mapping: a field nobody declared is
refused, not guessed. Times are written as UTC ISO-8601 with microseconds, into
`date_nanos` fields so they survive a round trip exactly.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from soc_agent.errors import StoreError

__all__ = [
    "DATE",
    "KEYWORD",
    "LONG",
    "STORED_ONLY",
    "UNINDEXED_OBJECT",
    "UNINDEXED_TEXT",
    "document_id",
    "ensure_index",
    "index_name",
    "parse_ts",
    "ts",
    "utc",
]

KEYWORD: dict[str, Any] = {"type": "keyword"}
DATE: dict[str, Any] = {"type": "date_nanos"}
LONG: dict[str, Any] = {"type": "long"}
# Kept verbatim in _source, never indexed: arbitrary JSON (vendor payloads, details)
# can neither explode nor break the strict mapping, nor become searchable by accident.
UNINDEXED_OBJECT: dict[str, Any] = {"type": "object", "enabled": False}
UNINDEXED_TEXT: dict[str, Any] = {"type": "text", "index": False}
# Kept in _source for reading back, never indexed: nothing searches these fields.
STORED_ONLY: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}

_MAX_ID_BYTES = 512  # Elasticsearch refuses longer document ids


def index_name(prefix: str, suffix: str) -> str:
    """`<prefix>-<suffix>`: every soc-agent index shares the configured prefix."""
    return f"{prefix}-{suffix}"


async def ensure_index(
    client: AsyncElasticsearch,
    index: str,
    properties: dict[str, Any],
    *,
    number_of_replicas: int,
    refresh_interval: str | None = None,
    what: str = "index",
) -> None:
    """Create `index` with its strict mapping unless it exists (safe from every process).

    Without `refresh_interval` the index keeps Elasticsearch's default. A refusal
    other than "already exists" is a StoreError naming `what` and the index;
    other client errors reach the caller as they are.
    """
    settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": number_of_replicas}
    if refresh_interval is not None:
        settings["refresh_interval"] = refresh_interval
    try:
        await client.indices.create(
            index=index,
            settings=settings,
            mappings={"dynamic": "strict", "properties": properties},
        )
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise StoreError(f"cannot create {what} {index}: {exc}") from exc


def document_id(value: str) -> str:
    """`value` as a document id: itself, or its SHA-256 when Elasticsearch would reject it."""
    if len(value.encode("utf-8")) <= _MAX_ID_BYTES:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def ts(value: datetime) -> str:
    """UTC ISO-8601 with microseconds and `Z`; a naive datetime is taken to be UTC."""
    return utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc(value: datetime) -> datetime:
    """`value`, a naive one taken to be UTC (comparable with the times read back)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_ts(value: str | None) -> datetime | None:
    """A stored time back as an aware datetime; None for a missing one."""
    return datetime.fromisoformat(value) if value else None
