"""Where the distributed runtime keeps its state: `store_backend: elasticsearch`.

Part of the one settings model (`Settings.elasticsearch`), so every key has an
environment variable: `SOC_AGENT_ELASTICSEARCH__HOSTS='["https://es:9200"]'`,
`SOC_AGENT_ELASTICSEARCH__API_KEY`, ... Credentials are `SecretStr`: never
printed, never in an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ElasticsearchConfig"]


class ElasticsearchConfig(BaseModel):
    """The cluster, the credentials of a role limited to `index_prefix-*`, and index layout."""

    model_config = ConfigDict(extra="forbid")
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1)
    api_key: SecretStr | None = Field(default=None, description="base64 API key (preferred)")
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = Field(default=None, description="CA bundle for https hosts")
    verify_certs: bool = True
    index_prefix: str = Field(
        default="soc-agent",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,150}$",
        description="every index is named <prefix>-<kind>",
    )
    number_of_replicas: int = Field(default=1, ge=0, le=16)
    refresh_interval: str = Field(
        default="1s",
        pattern=r"^[0-9]+(ms|s)$",
        description="how long list views may lag; writes a later search needs wait for it",
    )
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    lease_ttl_seconds: float = Field(
        default=15.0,
        ge=1,
        le=600,
        description="a dead worker's locks are taken over after this long",
    )
    lease_linger_seconds: float = Field(
        default=0.1,
        ge=0,
        le=0.3,
        description="how long a lease this process let go stays held for its next local "
        "user; its delete rides on the next lease request (0: delete at once)",
    )
    audit_chain: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$",
        description="the audit chain this process appends to (default "
        "`<agent_id>@<hostname>`; `<name>.2`, `.3`, ... while another live process holds "
        "it): one writer per chain; its head is anchored in the shared chain",
    )
    audit_chain_anchor_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="how often a process anchors its audit chain's head in the shared chain",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> ElasticsearchConfig:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("set either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    def client(self) -> AsyncElasticsearch:
        """A new async client; the caller closes it."""
        from soc_agent.store.elasticsearch_coalescing import CoalescingElasticsearch

        options: dict[str, Any] = {
            "request_timeout": self.request_timeout_seconds,
            "verify_certs": self.verify_certs,
            # Retries are the store's business (compare-and-set loops), not the transport's.
            "retry_on_timeout": False,
        }
        if self.ca_certs is not None:
            options["ca_certs"] = str(self.ca_certs)
        if self.api_key is not None:
            options["api_key"] = self.api_key.get_secret_value()
        elif self.username is not None and self.password is not None:
            options["basic_auth"] = (self.username, self.password.get_secret_value())
        return CoalescingElasticsearch(self.hosts, **options)
