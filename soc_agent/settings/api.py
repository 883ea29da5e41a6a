"""Settings of the analyst API and web UI: who may do what, and how callers authenticate.

Pure configuration (no FastAPI import), so `Settings` can hold it without pulling
the web stack into every command.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from soc_agent_connectors import configured_host_problem

from soc_agent.models import RiskTier
from soc_agent.models.identity import Role

__all__ = ["ApiConfig", "OidcConfig", "Role"]


class OidcConfig(BaseModel):
    """Bearer JWTs from an OpenID Connect provider, checked against its published keys.

    `jwks_url` defaults to the provider's discovery document
    (`{issuer}/.well-known/openid-configuration`). The role comes from
    `role_claim` (a string or a list of strings), translated by `role_map`
    (claim value -> role); a token whose claims map to no role is refused.
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    username_claim: str = "preferred_username"
    role_claim: str = "roles"
    role_map: dict[str, Role] = Field(default_factory=lambda: {r.value: r for r in Role})
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_cache_seconds: int = Field(default=300, ge=0, le=86400)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _not_metadata_or_private(cls, value: str | None) -> str | None:
        # The identity provider is dialled with every login: never a metadata service,
        # a link-local or (these are operator-run IdPs, not sidecars) a private address.
        if value is None:
            return None
        try:
            host = httpx.URL(value).host
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        problem = configured_host_problem(host, allow_private=False)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("algorithms")
    @classmethod
    def _no_symmetric(cls, values: list[str]) -> list[str]:
        # An HS* algorithm would let anyone holding the public key forge tokens.
        bad = [a for a in values if not a.startswith(("RS", "ES", "PS", "Ed"))]
        if bad or not values:
            raise ValueError(f"only asymmetric algorithms are allowed, got {bad or values}")
        return values


_DEFAULT_APPROVE_ROLES = {
    RiskTier.LOW: Role.ANALYST,
    RiskTier.MEDIUM: Role.ANALYST,
    RiskTier.HIGH: Role.SENIOR,
}


class ApiConfig(BaseModel):
    """`api:` in the config file. Defaults are safe for a single-host deployment."""

    model_config = ConfigDict(extra="forbid")

    approve_roles: dict[RiskTier, Role] = Field(
        default_factory=lambda: dict(_DEFAULT_APPROVE_ROLES),
        description="least role that may approve, reject or roll back an action of each risk",
    )
    kill_switch_on_role: Role = Role.ANALYST
    kill_switch_off_role: Role = Role.SENIOR
    oidc: OidcConfig | None = None
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag on the session cookie; unset: only when served over https",
    )
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    max_page_size: int = Field(default=200, ge=1, le=1000)
    publish_approvals: bool = Field(
        default=False,
        description="also publish each verdict to the Kafka approvals topic (kafka: settings)",
    )
    login_max_failures: int = Field(
        default=10, ge=1, le=1000, description="failed web logins per client or username"
    )
    login_window_seconds: int = Field(
        default=300, ge=1, le=86400, description="...within this window, then 429 until it passes"
    )
    expiry_sweep_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how often overdue proposals are expired"
    )
    audit_full_verify_seconds: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="the audit page re-reads the whole chain at most this often (new entries "
        "are checked on every load)",
    )

    @field_validator("approve_roles")
    @classmethod
    def _every_tier(cls, value: dict[RiskTier, Role]) -> dict[RiskTier, Role]:
        # A tier left out keeps its default rather than becoming approvable by nobody.
        merged = {**_DEFAULT_APPROVE_ROLES, **value}
        for tier, role in merged.items():
            if role is Role.VIEWER:
                raise ValueError(f"{tier.value}: a viewer may never approve")
        return merged

    @field_validator("kill_switch_on_role", "kill_switch_off_role")
    @classmethod
    def _kill_switch_roles(cls, value: Role) -> Role:
        if value is Role.VIEWER:
            raise ValueError("a viewer may not operate the kill switch")
        return value
