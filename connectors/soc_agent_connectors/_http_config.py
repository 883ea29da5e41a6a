"""Settings every HTTP connector shares, and the injectable time/randomness/DNS it runs on."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from soc_agent_connectors._http_guard import Resolver, configured_host_problem, resolve_host
from soc_agent_connectors.secrets import SecretRef

__all__ = ["HttpConnectorConfig", "HttpRuntime"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HttpRuntime:
    """Where an HTTP connector gets time, sleep, randomness and DNS; tests pass fakes."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], datetime] = _utcnow
    random: Callable[[], float] = field(default=random.random)  # jitter, not cryptography
    resolve: Resolver = resolve_host


class HttpConnectorConfig(BaseModel):
    """`connectors.<name>` keys common to every HTTP connector; vendor configs extend it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="the vendor API root, e.g. https://www.virustotal.com/api/v3")
    allow_literal_credentials: bool = Field(
        default=False, description="accept a literal secret in `credentials` (not recommended)"
    )
    credentials: SecretRef | None = Field(
        default=None, description="env:NAME or file:/path holding the API key or token"
    )
    timeout_seconds: float = Field(default=15.0, gt=0, le=300, description="read/write timeout")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, description="average calls per second (the vendor's quota); none"
    )
    rate_limit_burst: int = Field(default=1, ge=1, le=10_000)
    max_concurrency: int = Field(default=4, ge=1, le=256, description="calls in flight at once")
    max_retries: int = Field(default=2, ge=0, le=10, description="for idempotent calls only")
    backoff_base_seconds: float = Field(default=0.5, ge=0, le=60)
    backoff_max_seconds: float = Field(default=10.0, ge=0, le=600)
    retry_after_max_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="a longer Retry-After fails the call instead"
    )
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    cache_ttl_seconds: float = Field(default=300.0, ge=0, description="query results; 0 = off")
    cache_max_entries: int = Field(default=4096, ge=1, le=1_000_000)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="hosts besides the base URL's (e.g. an OAuth endpoint)"
    )
    untrusted_url_allow_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="private networks an untrusted-URL capability may reach anyway",
    )
    verify_tls: bool = True
    allow_private_network: bool = Field(
        default=False,
        description="base_url and allowed_hosts may be private addresses (RFC 1918, unique-local); "
        "metadata and link-local addresses are refused whatever this says",
    )

    @model_validator(mode="after")
    def _no_metadata_or_private_hosts(self) -> HttpConnectorConfig:
        hosts = [("base_url", httpx.URL(self.base_url).host)] + [
            ("allowed_hosts", h) for h in self.allowed_hosts
        ]
        for key, host in hosts:
            problem = configured_host_problem(host, allow_private=self.allow_private_network)
            if problem is not None:
                raise ValueError(f"{key}: {problem}; refused before any credential is sent")
        return self

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http(s) URL, e.g. https://api.example.com/v1")
        if url.userinfo:
            raise ValueError("must not carry credentials; use `credentials`")
        return value

    @field_validator("credentials")
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

    @property
    def hosts(self) -> frozenset[str]:
        """Every host a normal (trusted) call may reach."""
        base = httpx.URL(self.base_url).host.lower()
        return frozenset({base, *(h.strip().lower() for h in self.allowed_hosts)})
