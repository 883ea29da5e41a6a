"""Offline SIEM stand-in: searches a local file of ECS-shaped events."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent_connectors import Connector, capability
from soc_agent_connectors._local_data import DATA_PATH, load_jsonl, resolve_data_path

__all__ = ["LocalEventStore"]

# Where each entity type appears in an ECS event.
_FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("host.name", "host.hostname"),
    "user": ("user.name", "user.email"),
    "ip": ("source.ip", "destination.ip", "host.ip", "client.ip"),
    "domain": ("destination.domain", "dns.question.name", "url.domain"),
    "url": ("url.full", "url.original"),
    "file_hash": ("file.hash.sha256", "file.hash.sha1", "file.hash.md5"),
    "email": ("user.email", "email.from.address", "email.to.address"),
    "process": ("process.name", "process.executable"),
}


class LocalEventStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        default=None, description="JSON lines file of ECS events", json_schema_extra=DATA_PATH
    )


class SearchInput(BaseModel):
    entity_type: Literal["host", "user", "ip", "domain", "url", "file_hash", "email", "process"]
    value: str = Field(min_length=1, max_length=2048)
    around: datetime = Field(description="centre of the time range (usually the alert time)")
    window_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    category: str | None = Field(default=None, description="filter on event.category")
    outcome: str | None = Field(default=None, description="filter on event.outcome")
    aggregate_by: str | None = Field(default=None, description="dotted field to count by")
    limit: int = Field(default=20, ge=0, le=500)


class SearchOutput(BaseModel):
    total: int
    events: list[dict[str, Any]]
    buckets: dict[str, int] = Field(default_factory=dict)
    distinct: int = 0


class LocalEventStore(Connector):
    """ECS events from a JSON lines file, searched like a SIEM would be."""

    name = "event_store"
    description = "Local event store (offline stand-in for the SIEM)"
    config_model = LocalEventStoreConfig

    def __init__(self, config: LocalEventStoreConfig) -> None:
        super().__init__(config)
        events = load_jsonl(resolve_data_path(config.path, "events.jsonl"), connector=self.name)
        # Parsed once and sorted, so a search bisects its window instead of parsing every
        # event's time; the position keeps hits in file order. Events with no usable time
        # are never found, so they are left out.
        timed = sorted(
            (ts, i, event) for i, event in enumerate(events) if (ts := _time(event)) is not None
        )
        self._times = [ts for ts, _, _ in timed]
        self._timed = [(i, event) for _, i, event in timed]

    @capability(kind="query", scopes=["siem:read"])
    async def search(self, args: SearchInput) -> SearchOutput:
        """Events mentioning an entity within ±window of a time, with counts by a field."""
        around = _utc(args.around)
        start = around - timedelta(minutes=args.window_minutes)
        end = around + timedelta(minutes=args.window_minutes)
        window = self._timed[bisect_left(self._times, start) : bisect_right(self._times, end)]
        want = args.value.strip().lower()
        hits: list[dict[str, Any]] = []
        for _, event in sorted(window, key=itemgetter(0)):
            if args.category and args.category not in _as_list(_get(event, "event.category")):
                continue
            if args.outcome and _get(event, "event.outcome") != args.outcome:
                continue
            if any(
                want in (str(v).lower() for v in _as_list(_get(event, f)))
                for f in _FIELDS[args.entity_type]
            ):
                hits.append(event)
        buckets: Counter[str] = Counter()
        if args.aggregate_by:
            for event in hits:
                for v in _as_list(_get(event, args.aggregate_by)):
                    buckets[str(v)] += 1
        return SearchOutput(
            total=len(hits),
            events=hits[: args.limit],
            buckets=dict(buckets.most_common(50)),
            distinct=len(buckets),
        )


def _get(doc: dict[str, Any], dotted: str) -> Any:
    """ECS fields may be nested objects or flattened dotted keys; accept both."""
    if dotted in doc:
        return doc[dotted]
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _time(event: dict[str, Any]) -> datetime | None:
    raw = event.get("@timestamp")
    if not isinstance(raw, str):
        return None
    try:
        return _utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def _utc(at: datetime) -> datetime:
    """ECS times are UTC: one written without an offset is read as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
