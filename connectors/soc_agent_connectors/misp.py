"""MISP: search a MISP instance's attributes for an indicator.

`search_attributes` posts to `/attributes/restSearch` with the documented
JSON filters (`returnFormat`, `value`, `type`, `limit`, `page`) and the
key in a bare `Authorization` header, and pages through
`{"response": {"Attribute": [...]}}` until the caller's limit. It is a
query sent as POST, so it is declared idempotent: transient failures are
retried like any lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from soc_agent.errors import ConnectorError
from soc_agent_connectors import HttpConnector, HttpConnectorConfig, HttpRuntime, capability

__all__ = ["Misp", "MispAttribute", "MispConfig", "MispSearch", "MispSearchResult"]

_PATH = "/attributes/restSearch"


class MispConfig(HttpConnectorConfig):
    """A MISP instance is self-hosted: `base_url` has no default."""

    page_size: int = Field(default=100, ge=1, le=1000, description="attributes per request")
    max_pages: int = Field(default=20, ge=1, le=1000, description="a bound on one search")


class MispSearch(BaseModel):
    value: str = Field(min_length=1, max_length=4096, description="the indicator value")
    type: str | None = Field(
        default=None, max_length=64, description="MISP attribute type, e.g. ip-dst, sha256"
    )
    to_ids: bool | None = Field(default=None, description="only attributes (not) flagged for IDS")
    limit: int = Field(default=100, ge=1, le=10_000, description="most attributes to return")

    @field_validator("value")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class MispAttribute(BaseModel):
    id: str
    event_id: str
    event_uuid: str | None = None
    event_info: str | None = None
    category: str
    type: str
    value: str
    to_ids: bool
    comment: str = ""
    timestamp: datetime | None = None
    tags: list[str] = Field(default_factory=list)


class MispSearchResult(BaseModel):
    value: str
    found: bool
    matches: list[MispAttribute] = Field(default_factory=list)
    event_ids: list[str] = Field(default_factory=list, description="distinct, in match order")
    categories: list[str] = Field(default_factory=list)
    to_ids: bool = Field(description="at least one match is flagged for detection (IDS)")
    truncated: bool = Field(description="more matches may exist beyond `limit`")


class Misp(HttpConnector):
    name = "misp"
    description = "MISP threat-sharing platform: attribute search"
    config_model: ClassVar[type[HttpConnectorConfig]] = MispConfig
    auth_header = "Authorization"
    auth_scheme = None  # MISP expects the bare automation key
    default_headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": "soc-agent",
    }

    def __init__(self, config: MispConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.misp_config = config

    @capability(kind="query", scopes=["intel:read"], idempotent=True)
    async def search_attributes(self, args: MispSearch) -> MispSearchResult:
        """Attributes matching a value (and optionally a type): events, categories, tags."""
        cfg = self.misp_config
        page_size = min(cfg.page_size, args.limit)
        matches: list[MispAttribute] = []
        truncated = False
        for page in range(1, cfg.max_pages + 1):
            query: dict[str, Any] = {
                "returnFormat": "json",
                "value": args.value,
                "limit": page_size,
                "page": page,
            }
            if args.type:
                query["type"] = args.type
            if args.to_ids is not None:
                query["to_ids"] = args.to_ids
            rows = _attributes(await self.post_json(_PATH, query))
            room = args.limit - len(matches)
            matches += [_attribute(row) for row in rows[:room]]
            if len(rows) > room:
                truncated = True
                break
            if len(rows) < page_size:
                break
            if len(matches) >= args.limit:
                # A full last page: more may exist; one more call would tell, but the
                # caller asked for no more, so say it may be truncated.
                truncated = True
                break
        else:
            truncated = True
        return MispSearchResult(
            value=args.value,
            found=bool(matches),
            matches=matches,
            event_ids=list(dict.fromkeys(m.event_id for m in matches)),
            categories=list(dict.fromkeys(m.category for m in matches)),
            to_ids=any(m.to_ids for m in matches),
            truncated=truncated,
        )


def _attributes(body: Any) -> list[dict[str, Any]]:
    try:
        rows = body["response"]["Attribute"]
    except (KeyError, TypeError):
        raise ConnectorError(f"POST {_PATH}: answer has no response.Attribute list") from None
    if not isinstance(rows, list):
        raise ConnectorError(f"POST {_PATH}: response.Attribute is not a list")
    return [row for row in rows if isinstance(row, dict)]


def _attribute(row: dict[str, Any]) -> MispAttribute:
    event = row.get("Event")
    if not isinstance(event, dict):
        event = {}
    stamp = str(row.get("timestamp") or "")
    try:
        return MispAttribute(
            id=str(row["id"]),
            event_id=str(row["event_id"]),
            event_uuid=event.get("uuid"),
            event_info=event.get("info"),
            category=str(row["category"]),
            type=str(row["type"]),
            value=str(row["value"]),
            to_ids=bool(row.get("to_ids", False)),
            comment=str(row.get("comment") or ""),
            timestamp=(datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else None),
            tags=[
                str(t["name"])
                for t in row.get("Tag") or []
                if isinstance(t, dict) and t.get("name")
            ],
        )
    except KeyError as exc:
        raise ConnectorError(f"POST {_PATH}: an attribute lacks {exc.args[0]!r}") from None
