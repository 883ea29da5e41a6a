"""Elasticsearch as the SIEM, through the official async client (`AsyncElasticsearch`).

`search` takes and answers what the offline `event_store.search` does (the
answer adds `total_relation` and `index_missing`), so a deployment swaps
`event_store` for `elasticsearch` without touching its playbooks; `count_by`
ranks the values of a field (failed logons per account from one source IP).
There is deliberately no free-form query capability: alert content reaches
the arguments, and a parameterised subset of the DSL would still let it
widen a search or load the cluster, so only these two shapes are built.

One client per connector, created on first use and closed in `aclose()`;
the credential (`api_key`, or `username` + `password`) is read from its
`SecretRef` at every call and sent per request, so a rotated key takes
effect at once, and a 401 re-reads it and retries once. Failures become a
`ConnectorError` that names what to fix and never carries the secret.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import deque
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
    ConnectionTimeout,
    NotFoundError,
    TransportError,
)
from elasticsearch import (
    ConnectionError as EsConnectionError,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from soc_agent.errors import ConnectorError
from soc_agent_connectors import Connector, RedactingFilter, SecretRef, capability, redact_text
from soc_agent_connectors.elasticsearch_query import (
    ENTITY_FIELDS,
    CountByInput,
    CountByOutput,
    EntityKind,
    SiemSearchOutput,
    build_count_by,
    build_search,
    error_summary,
    is_field_name,
    parse_count_by,
    parse_search,
)
from soc_agent_connectors.event_store_local import SearchInput

__all__ = ["ElasticsearchConfig", "ElasticsearchSiem"]

log = logging.getLogger("soc_agent.connectors.elasticsearch")

_CLIENT_LOGGERS = ("elastic_transport.transport", "elastic_transport.node", "elasticsearch")
_INDEX_FORBIDDEN = set(' "\\/?#<>|')


class ElasticsearchConfig(BaseModel):
    """`connectors.elasticsearch`: where the cluster is, what to search, how to authenticate."""

    model_config = ConfigDict(extra="forbid")

    hosts: list[str] = Field(min_length=1, description="node URLs, e.g. https://es.example:9200")
    index: str = Field(default="logs-*,ecs-*", description="index pattern(s), comma-separated")
    allow_literal_credentials: bool = Field(
        default=False, description="accept literal secrets in the configuration (not advised)"
    )
    api_key: SecretRef | None = Field(
        default=None, description="env:NAME or file:/path: the encoded API key (id:key, base64)"
    )
    username: str | None = Field(default=None, description="basic authentication user")
    password: SecretRef | None = Field(default=None, description="env:NAME or file:/path")
    verify_certs: bool = True
    ca_certs: str | None = Field(default=None, description="PEM bundle of the cluster's CA")
    request_timeout: float = Field(default=15.0, gt=0, le=300, description="seconds per request")
    max_retries: int = Field(default=2, ge=0, le=10, description="on 429/502/503/504 and errors")
    max_concurrency: int = Field(default=4, ge=1, le=64, description="searches in flight")
    max_hits: int = Field(default=500, ge=1, le=10_000, description="events one search returns")
    track_total_hits_up_to: int | None = Field(
        default=None,
        ge=1,
        description="count hits exactly up to this many (then total_relation is gte); none: exact",
    )
    allow_partial_results: bool = Field(
        default=False, description="accept answers from some shards only (otherwise an error)"
    )
    case_insensitive: bool = Field(
        default=True, description="keyword entity fields match regardless of case"
    )
    timestamp_field: str = "@timestamp"
    fields: dict[EntityKind, list[str]] = Field(
        default_factory=dict,
        description="replace the ECS fields searched for an entity type, e.g. {host: [host.name]}",
    )

    @field_validator("hosts")
    @classmethod
    def _urls(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            parts = urlsplit(host)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{host!r} must be an absolute http(s) URL")
            if parts.username or parts.password:
                raise ValueError("hosts must not carry credentials; use api_key or password")
        return hosts

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        names = value.split(",")
        if not all(names) or any(set(n) & _INDEX_FORBIDDEN for n in names):
            raise ValueError("comma-separated index names or patterns, e.g. logs-*,ecs-*")
        return value

    @field_validator("api_key", "password")
    @classmethod
    def _no_unintended_literal(
        cls, value: SecretRef | None, info: ValidationInfo
    ) -> SecretRef | None:
        if (
            value is not None
            and value.kind == "literal"
            and not info.data.get("allow_literal_credentials", False)
        ):
            raise ValueError(
                "must be env:NAME or file:/path; a literal secret in the "
                "configuration needs allow_literal_credentials: true"
            )
        return value

    @field_validator("ca_certs")
    @classmethod
    def _ca_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("timestamp_field")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        if not is_field_name(value):
            raise ValueError("must be a field name such as @timestamp")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[EntityKind, list[str]]) -> dict[EntityKind, list[str]]:
        for entity, names in value.items():
            if not names or not all(is_field_name(n) for n in names):
                raise ValueError(f"{entity}: a non-empty list of field names")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ElasticsearchConfig:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("give api_key or username + password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    def fields_for(self, entity_type: EntityKind) -> tuple[str, ...]:
        override = self.fields.get(entity_type)
        return tuple(override) if override else ENTITY_FIELDS[entity_type]


class ElasticsearchSiem(Connector):
    name = "elasticsearch"
    description = "Elasticsearch SIEM: ECS events by entity and time range, with aggregations"
    config_model: ClassVar[type[BaseModel]] = ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig) -> None:
        super().__init__(config)
        self.es_config = config
        self._client: AsyncElasticsearch | None = None
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._seen_secrets: deque[str] = deque(maxlen=6)
        self._log_filter = RedactingFilter(self.secret_values)
        if config.api_key is not None and config.api_key.kind == "literal":
            log.warning("connector %s reads a literal API key from its configuration", self.name)

    @capability(kind="query", scopes=["siem:read"])
    async def search(self, args: SearchInput) -> SiemSearchOutput:
        """Events mentioning an entity within ±window of a time, with counts by a field."""
        cfg = self.es_config
        try:
            body = build_search(
                args,
                fields=cfg.fields_for(args.entity_type),
                max_hits=cfg.max_hits,
                timestamp_field=cfg.timestamp_field,
                track_total_hits=self._track_total_hits(),
                case_insensitive=cfg.case_insensitive,
            )
        except ValueError as exc:
            raise ConnectorError(f"elasticsearch.search: {exc}") from None
        response, missing = await self._search(body)
        return parse_search(response, index_missing=missing)

    @capability(kind="query", scopes=["siem:read"])
    async def count_by(self, args: CountByInput) -> CountByOutput:
        """Events per value of a field (e.g. failed logons per user from one source IP)."""
        cfg = self.es_config
        fields = cfg.fields_for(args.entity_type) if args.entity_type else ()
        try:
            body = build_count_by(
                args,
                fields=fields,
                timestamp_field=cfg.timestamp_field,
                track_total_hits=self._track_total_hits(),
                case_insensitive=cfg.case_insensitive,
            )
        except ValueError as exc:
            raise ConnectorError(f"elasticsearch.count_by: {exc}") from None
        response, missing = await self._search(body)
        return parse_count_by(response, args.by, index_missing=missing)

    # --- the Connector hooks ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        cfg = self.es_config
        return {"base_url": cfg.hosts[0], "hosts": list(cfg.hosts), "index": cfg.index}

    def secret_values(self) -> tuple[str, ...]:
        return tuple(self._seen_secrets)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
            for name in _CLIENT_LOGGERS:
                logging.getLogger(name).removeFilter(self._log_filter)

    # --- internals -------------------------------------------------------------------------

    def _track_total_hits(self) -> bool | int:
        limit = self.es_config.track_total_hits_up_to
        return True if limit is None else limit

    def _es(self) -> AsyncElasticsearch:
        if self._client is None:
            cfg = self.es_config
            for name in _CLIENT_LOGGERS:
                logging.getLogger(name).addFilter(self._log_filter)
            tls: dict[str, Any] = {"ca_certs": cfg.ca_certs} if cfg.ca_certs else {}
            self._client = AsyncElasticsearch(
                cfg.hosts,
                verify_certs=cfg.verify_certs,
                **tls,
                request_timeout=cfg.request_timeout,
                max_retries=cfg.max_retries,
                retry_on_timeout=False,  # a slow search is not made faster by repeating it
                connections_per_node=cfg.max_concurrency,
            )
        return self._client

    async def _search(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The answer, and whether a configured (non-wildcard) index does not exist.

        A missing index is not an error: the search is repeated ignoring it, so
        the indices that do exist still answer, and the output says so.
        """
        missing = False
        async with self._slots:
            try:
                try:
                    response = await self._authenticated(body, ignore_unavailable=False)
                except NotFoundError as exc:
                    if _error_type(exc) != "index_not_found_exception":
                        raise
                    log.warning(
                        "elasticsearch: %s; searching the indices that exist",
                        self._redact(error_summary(exc.body)),
                    )
                    missing = True
                    response = await self._authenticated(body, ignore_unavailable=True)
            except (TransportError, ApiError) as exc:
                raise self._error(exc) from None
        failed = response.get("_shards", {}).get("failed", 0)
        if failed:  # only reachable with allow_partial_results: true
            log.warning("elasticsearch: %s shard(s) failed; the answer is partial", failed)
        return response, missing

    async def _authenticated(self, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        try:
            return await self._send(body, await self._auth(), params)
        except AuthenticationException:
            if not await self._refresh_credentials():
                raise
            return await self._send(body, await self._auth(), params)

    async def _send(
        self, body: dict[str, Any], auth: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        cfg = self.es_config
        client = self._es().options(**auth) if auth else self._es()
        response = await client.search(
            index=cfg.index,
            allow_partial_search_results=cfg.allow_partial_results,
            **params,
            **body,
        )
        return dict(response.body)

    async def _auth(self) -> dict[str, Any]:
        cfg = self.es_config
        if cfg.api_key is not None:
            key = await asyncio.to_thread(cfg.api_key.get)
            self._remember(key)
            return {"api_key": key}
        if cfg.username is not None and cfg.password is not None:
            password = await asyncio.to_thread(cfg.password.get)
            self._remember(password)
            self._remember(base64.b64encode(f"{cfg.username}:{password}".encode()).decode())
            return {"basic_auth": (cfg.username, password)}
        return {}

    async def _refresh_credentials(self) -> bool:
        """After a 401: re-read the secret; True if it changed, so one retry may succeed."""
        ref = self.es_config.api_key or self.es_config.password
        if ref is None:
            return False
        value, changed = await asyncio.to_thread(ref.refresh)
        self._remember(value)
        return changed

    def _remember(self, value: str) -> None:
        if value not in self._seen_secrets:
            self._seen_secrets.append(value)

    def _redact(self, text: str) -> str:
        return redact_text(text, self.secret_values())

    def _error(self, exc: TransportError | ApiError) -> ConnectorError:
        """A message naming what to fix; never the credential."""
        cfg = self.es_config
        hosts = ", ".join(cfg.hosts)
        message: str
        if isinstance(exc, ConnectionTimeout):
            message = f"no answer from {hosts} within {cfg.request_timeout:g}s (request_timeout)"
        elif isinstance(exc, EsConnectionError):
            message = f"cannot connect to {hosts}: {exc.message}"
        elif isinstance(exc, AuthenticationException):
            ref = cfg.api_key or cfg.password
            where = (
                ("api_key" if cfg.api_key else "password") + f" ({ref.reference})"
                if ref
                else "api_key (none configured)"
            )
            message = f"authentication failed (401): check connectors.elasticsearch.{where}"
        elif isinstance(exc, AuthorizationException):
            message = (
                f"not authorised (403) to search {cfg.index}: the credential needs the `read` "
                f"index privilege on it ({error_summary(exc.body)})"
            )
        elif isinstance(exc, ApiError):
            message = f"search of {cfg.index} failed ({exc.meta.status} {error_summary(exc.body)})"
        else:
            message = f"{type(exc).__name__}: {exc}"
        return ConnectorError(f"elasticsearch: {self._redact(message)}")


def _error_type(exc: ApiError) -> str | None:
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    return error.get("type") if isinstance(error, dict) else None
