"""Elasticsearch query DSL for the SIEM connector, and the mapping of its answers: pure functions.

The search takes exactly the offline `event_store.search` input, so a
deployment swaps `event_store` for `elasticsearch` without touching a
playbook. An entity matches when any of its ECS fields holds the value:
`term` queries (case-insensitive on keyword fields; exact, or a CIDR range,
on the `ip` fields of an `ip` entity) in a `bool.should` with
`minimum_should_match: 1`, filtered by a `range` on `@timestamp` and by
`event.category` / `event.outcome`. Counts come from a `terms` aggregation
(top 50, like the offline store) and a `cardinality` aggregation (exact up
to 40,000 distinct values, approximate beyond: HyperLogLog++).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from soc_agent_connectors.event_store_local import SearchInput, SearchOutput

__all__ = [
    "BUCKETS",
    "ENTITY_FIELDS",
    "CountByInput",
    "CountByOutput",
    "EntityKind",
    "SiemSearchOutput",
    "build_count_by",
    "build_search",
    "entity_clause",
    "error_summary",
    "is_field_name",
    "normalise_ip",
    "parse_count_by",
    "parse_search",
    "time_range",
]

EntityKind = Literal["host", "user", "ip", "domain", "url", "file_hash", "email", "process"]

# Where each entity type appears in an ECS event (the offline store's table). The `ip`
# fields are ECS `ip` fields, queried exactly or by CIDR; all others are keywords.
ENTITY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "host": ("host.name", "host.hostname"),
    "user": ("user.name", "user.email"),
    "ip": ("source.ip", "destination.ip", "host.ip", "client.ip"),
    "domain": ("destination.domain", "dns.question.name", "url.domain"),
    "url": ("url.full", "url.original"),
    "file_hash": ("file.hash.sha256", "file.hash.sha1", "file.hash.md5"),
    "email": ("user.email", "email.from.address", "email.to.address"),
    "process": ("process.name", "process.executable"),
}

BUCKETS = 50  # terms buckets returned by `search`, as the offline store returns
# Below this many distinct values `cardinality` is exact (Elasticsearch's maximum).
CARDINALITY_PRECISION = 40_000
MAX_RANGE = timedelta(days=60)

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@.\-]{0,254}$")


def is_field_name(value: str) -> bool:
    """A dotted field name, nothing that could be read as a pattern, script or path."""
    return bool(_FIELD_NAME.match(value)) and ".." not in value


class SiemSearchOutput(SearchOutput):
    """`event_store.search`'s output, plus what only a real SIEM can report."""

    total_relation: Literal["eq", "gte"] = Field(
        default="eq", description="gte: `total` is a lower bound (track_total_hits_up_to)"
    )
    index_missing: bool = Field(
        default=False, description="an index named in the configuration does not exist"
    )


class CountByInput(BaseModel):
    """Count events by a field, optionally for one entity, over a time range."""

    by: str = Field(description="dotted keyword/ip/numeric field to count by, e.g. user.name")
    entity_type: EntityKind | None = None
    value: str | None = Field(default=None, min_length=1, max_length=2048)
    around: datetime | None = Field(default=None, description="centre of the range")
    window_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    start: datetime | None = Field(default=None, description="or an explicit range: start")
    end: datetime | None = Field(default=None, description="and end (inclusive)")
    category: str | None = Field(default=None, description="filter on event.category")
    outcome: str | None = Field(default=None, description="filter on event.outcome")
    action: str | None = Field(default=None, description="filter on event.action")
    size: int = Field(default=10, ge=1, le=500, description="buckets to return, largest first")
    min_count: int = Field(default=1, ge=1, description="omit buckets with fewer events")

    @field_validator("by")
    @classmethod
    def _field(cls, value: str) -> str:
        if not is_field_name(value):
            raise ValueError("must be a dotted field name such as user.name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.entity_type is None) != (self.value is None):
            raise ValueError("entity_type and value go together")
        if self.around is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give either around (+ window_minutes) or start and end")
        elif self.start is None or self.end is None:
            raise ValueError("a time range is required: around, or start and end")
        elif not _utc(self.start) < _utc(self.end):
            raise ValueError("start must be before end")
        elif _utc(self.end) - _utc(self.start) > MAX_RANGE:
            raise ValueError(f"the range may span at most {MAX_RANGE.days} days")
        return self

    def bounds(self) -> tuple[datetime, datetime]:
        if self.around is not None:
            window = timedelta(minutes=self.window_minutes)
            return self.around - window, self.around + window
        assert self.start is not None
        assert self.end is not None
        return self.start, self.end


class CountByOutput(BaseModel):
    by: str
    total: int = Field(description="events matching the filters")
    total_relation: Literal["eq", "gte"] = "eq"
    buckets: dict[str, int] = Field(default_factory=dict, description="largest first")
    other: int = Field(default=0, description="events whose value is not among the buckets")
    distinct: int = Field(default=0, description="distinct values (exact up to 40,000)")
    index_missing: bool = False


# --- building -----------------------------------------------------------------------------


def normalise_ip(value: str) -> str:
    """An IP address or CIDR network in canonical form; ValueError for anything else."""
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is neither an IP address nor a CIDR network") from None


def entity_clause(
    entity_type: str, value: str, fields: Sequence[str], *, case_insensitive: bool = True
) -> dict[str, Any]:
    """`bool.should` over the entity's fields; at least one must hold the value."""
    if entity_type == "ip":
        ip = normalise_ip(value)
        should = [{"term": {f: {"value": ip}}} for f in fields]
    else:
        text = value.strip()
        term: dict[str, Any] = {"value": text}
        if case_insensitive:
            term["case_insensitive"] = True
        should = [{"term": {f: dict(term)}} for f in fields]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def time_range(start: datetime, end: datetime, field: str = "@timestamp") -> dict[str, Any]:
    """Inclusive at both ends, as the offline store; naive times are taken as UTC."""
    return {
        "range": {
            field: {
                "gte": _iso(start),
                "lte": _iso(end),
                "format": "strict_date_optional_time",
            }
        }
    }


def build_search(
    args: SearchInput,
    *,
    fields: Sequence[str],
    max_hits: int,
    timestamp_field: str = "@timestamp",
    track_total_hits: bool | int = True,
    case_insensitive: bool = True,
) -> dict[str, Any]:
    """The `search` request body (the keyword arguments of `AsyncElasticsearch.search`)."""
    window = timedelta(minutes=args.window_minutes)
    filters = [
        time_range(args.around - window, args.around + window, timestamp_field),
        entity_clause(args.entity_type, args.value, fields, case_insensitive=case_insensitive),
        *_event_filters(category=args.category, outcome=args.outcome),
    ]
    body: dict[str, Any] = {
        "query": {"bool": {"filter": filters}},
        "sort": [{timestamp_field: {"order": "desc", "unmapped_type": "date"}}],
        "size": min(args.limit, max_hits),
        "track_total_hits": track_total_hits,
    }
    if args.aggregate_by:
        if not is_field_name(args.aggregate_by):
            raise ValueError(f"aggregate_by {args.aggregate_by!r} is not a field name")
        body["aggs"] = _count_aggs(args.aggregate_by, BUCKETS, 1)
    return body


def build_count_by(
    args: CountByInput,
    *,
    fields: Sequence[str] = (),
    timestamp_field: str = "@timestamp",
    track_total_hits: bool | int = True,
    case_insensitive: bool = True,
) -> dict[str, Any]:
    """The `count_by` request body: no hits, only the aggregations."""
    start, end = args.bounds()
    filters: list[dict[str, Any]] = [time_range(start, end, timestamp_field)]
    if args.entity_type is not None and args.value is not None:
        filters.append(
            entity_clause(args.entity_type, args.value, fields, case_insensitive=case_insensitive)
        )
    filters += _event_filters(category=args.category, outcome=args.outcome, action=args.action)
    return {
        "query": {"bool": {"filter": filters}},
        "size": 0,
        "track_total_hits": track_total_hits,
        "aggs": _count_aggs(args.by, args.size, args.min_count),
    }


def _event_filters(**wanted: str | None) -> list[dict[str, Any]]:
    return [{"term": {f"event.{name}": value}} for name, value in wanted.items() if value]


def _count_aggs(field: str, size: int, min_count: int) -> dict[str, Any]:
    terms: dict[str, Any] = {"field": field, "size": size}
    if min_count > 1:
        terms["min_doc_count"] = min_count
    return {
        "by": {"terms": terms},
        "distinct": {"cardinality": {"field": field, "precision_threshold": CARDINALITY_PRECISION}},
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- mapping answers ----------------------------------------------------------------------


def parse_search(response: Mapping[str, Any], *, index_missing: bool = False) -> SiemSearchOutput:
    """A search answer (`hits.total {value, relation}`, `_source`, aggregations) as output."""
    total, relation = _total(response)
    hits = response.get("hits", {}).get("hits", [])
    buckets, _, distinct = _aggregations(response)
    return SiemSearchOutput(
        total=total,
        total_relation=relation,
        events=[dict(hit.get("_source") or {}) for hit in hits],
        buckets=buckets,
        distinct=distinct,
        index_missing=index_missing,
    )


def parse_count_by(
    response: Mapping[str, Any], by: str, *, index_missing: bool = False
) -> CountByOutput:
    total, relation = _total(response)
    buckets, other, distinct = _aggregations(response)
    return CountByOutput(
        by=by,
        total=total,
        total_relation=relation,
        buckets=buckets,
        other=other,
        distinct=distinct,
        index_missing=index_missing,
    )


def error_summary(body: Any) -> str:
    """`type: reason` of an Elasticsearch error body, preferring the first root cause."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, str):
        return error
    if not isinstance(error, Mapping):
        return "no error details"
    causes = error.get("root_cause")
    cause = causes[0] if isinstance(causes, list) and causes else error
    return f"{cause.get('type', error.get('type', 'error'))}: {cause.get('reason', '')}".strip()


def _total(response: Mapping[str, Any]) -> tuple[int, Literal["eq", "gte"]]:
    raw = response.get("hits", {}).get("total", 0)
    if isinstance(raw, Mapping):  # {"value": N, "relation": "eq" | "gte"}
        return int(raw.get("value", 0)), "gte" if raw.get("relation") == "gte" else "eq"
    return int(raw), "eq"  # rest_total_hits_as_int or a very old server


def _aggregations(response: Mapping[str, Any]) -> tuple[dict[str, int], int, int]:
    aggs = response.get("aggregations") or {}
    terms = aggs.get("by") or {}
    buckets: dict[str, int] = {}
    for bucket in terms.get("buckets", []):
        key = bucket.get("key_as_string", bucket.get("key"))
        buckets[str(key)] = int(bucket.get("doc_count", 0))
    distinct = int((aggs.get("distinct") or {}).get("value") or 0)
    return buckets, int(terms.get("sum_other_doc_count", 0)), distinct
