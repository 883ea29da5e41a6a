"""Policy configuration: autonomy knobs, guardrail settings and protected-asset patterns.

Validated once at start-up; every field error names its key. Nothing here reads a
clock or a file: the runtime loads the YAML/env and hands the model to the engine.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from soc_agent.models.alert import Entity, EntityType, Severity
from soc_agent.models.decision import AutonomyLevel, RiskTier, RunMode

__all__ = [
    "DEFAULT_BLAST_RADIUS",
    "DEFAULT_BUDGET_KEY",
    "DEFAULT_PROPOSAL_EXPIRY_SECONDS",
    "BlastRadiusBudget",
    "ModelPolicy",
    "PolicyConfig",
    "ProtectedAssets",
    "budget_for",
    "proposal_expiry",
]

DEFAULT_BUDGET_KEY = "*"

# The SOAR norm: about 1 h for high (and critical), 12 h for medium, 24 h for low.
DEFAULT_PROPOSAL_EXPIRY_SECONDS: MappingProxyType[Severity, int] = MappingProxyType(
    {
        Severity.CRITICAL: 3600,
        Severity.HIGH: 3600,
        Severity.MEDIUM: 43200,
        Severity.LOW: 86400,
        Severity.INFORMATIONAL: 86400,
    }
)

_GLOB_CHARS = frozenset("*?[")


class ProtectedAssets(BaseModel):
    """Assets and identities that are never contained automatically.

    hosts, users and emails are fnmatch globs compared case-insensitively; ips are
    addresses or CIDR networks; domains match themselves and every subdomain (plain
    suffix), or are globs when they contain `*`, `?` or `[`. Matching errs towards
    protection: a user pattern also matches the bare account name of `DOMAIN\\name`
    and `name@domain`, a host that is an IP address is checked against `ips`, and a
    URL is checked by its host name.
    """

    model_config = ConfigDict(extra="forbid")

    hosts: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)

    @field_validator("hosts", "users", "emails")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        out = [v.strip() for v in values]
        if any(not v for v in out):
            raise ValueError("empty pattern")
        return out

    @field_validator("domains")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        out = [v.strip() for v in values]
        if any(not v.strip(".") for v in out):
            raise ValueError("empty domain pattern")
        return out

    @field_validator("ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        out: list[str] = []
        for raw in values:
            try:
                network = ipaddress.ip_network(raw.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or CIDR network: {raw[:64]!r}") from exc
            out.append(str(network) if network.num_addresses > 1 else str(network.network_address))
        return out

    def matches(self, entity: Entity) -> str | None:
        """The configured pattern that protects `entity` under any of its names, or None.

        Every alias counts: a user protected as `ceo` stays protected when an alert
        names the UPN and carries `ceo` only as the sAMAccountName alias.
        """
        for name in entity.names:
            found = self._matches_name(entity.type, name)
            if found is not None:
                return found
        return None

    def _matches_name(self, kind: EntityType, value: str) -> str | None:
        if kind is EntityType.HOST:
            return _glob(self.hosts, value) or _ip(self.ips, value)
        if kind is EntityType.USER:
            found = _glob(self.users, value, *_bare_account(value))
            if found is None and "@" in value:
                found = _glob(self.emails, value)
            return found
        if kind is EntityType.EMAIL:
            return _glob(self.emails, value) or _glob(self.users, value, *_bare_account(value))
        if kind is EntityType.IP:
            return _ip(self.ips, value)
        if kind is EntityType.DOMAIN:
            return _domain(self.domains, value)
        if kind is EntityType.URL:
            try:
                host = urlsplit(value).hostname
            except ValueError:
                return None
            if not host:
                return None
            return _ip(self.ips, host) or _domain(self.domains, host)
        return None


def _bare_account(value: str) -> tuple[str, ...]:
    """`CORP\\alice` and `alice@corp.example` -> (`alice`,); plain names -> ()."""
    bare = value.rsplit("\\", 1)[-1].split("@", 1)[0]
    return (bare,) if bare and bare != value else ()


def _glob(patterns: list[str], *values: str) -> str | None:
    lowered = [v.lower() for v in values]
    for pattern in patterns:
        p = pattern.lower()
        if any(fnmatchcase(v, p) for v in lowered):
            return pattern
    return None


def _ip(patterns: list[str], value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    for pattern in patterns:
        if address in ipaddress.ip_network(pattern, strict=False):
            return pattern
    return None


def _domain(patterns: list[str], value: str) -> str | None:
    name = value.lower().rstrip(".")
    for pattern in patterns:
        p = pattern.lower().strip(".")
        if _GLOB_CHARS.intersection(p):
            if fnmatchcase(name, p):
                return pattern
        elif name == p or name.endswith("." + p):
            return pattern
    return None


class BlastRadiusBudget(BaseModel):
    """At most `max_executions` automatic executions per `window_seconds` (0: never)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_executions: int = Field(ge=0)
    window_seconds: int = Field(gt=0)


DEFAULT_BLAST_RADIUS = BlastRadiusBudget(max_executions=10, window_seconds=3600)


def _coerce_autonomy(value: Any) -> Any:
    """Accept level names (`approver`) and numeric strings (`4`) as well as ints."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            return AutonomyLevel[text.upper()]
        except KeyError:
            names = ", ".join(f"{lvl.value} {lvl.name.lower()}" for lvl in AutonomyLevel)
            raise ValueError(f"unknown autonomy level {text[:32]!r} (one of {names})") from None
    return value


class ModelPolicy(BaseModel):
    """How far a language model's assessment may move a decision (`policy.model`)."""

    model_config = ConfigDict(extra="forbid")

    max_points: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="the most model-derived score rules may add (or take away) together",
    )
    may_execute: bool = Field(
        default=False,
        description="may an action execute when only model-derived points reach execute_at "
        "(false: it is proposed instead)",
    )


class CalibrationPolicy(BaseModel):
    """What `soc-agent policy suggest` asks of measured precision (`policy.calibration`)."""

    model_config = ConfigDict(extra="forbid")

    min_cases: int = Field(
        default=50, ge=1, le=1_000_000, description="labelled executions a level must rest on"
    )
    min_precision: float = Field(
        default=0.98, gt=0, le=1, description="share of those that were true positives"
    )


class PolicyConfig(BaseModel):
    """Deployment-wide policy: the knobs a SOC sets, and the guardrails playbooks cannot loosen."""

    model_config = ConfigDict(extra="forbid")

    agent_autonomy: AutonomyLevel = AutonomyLevel.APPROVER
    action_autonomy: dict[str, AutonomyLevel] = Field(default_factory=dict)
    kill_switch: bool = False
    mode: RunMode = RunMode.LIVE
    protected: ProtectedAssets = Field(default_factory=ProtectedAssets)
    four_eyes_actions: list[str] = Field(default_factory=lambda: ["disable_user"])
    four_eyes_min_risk: RiskTier | None = RiskTier.HIGH
    blast_radius: dict[str, BlastRadiusBudget] = Field(
        default_factory=lambda: {DEFAULT_BUDGET_KEY: DEFAULT_BLAST_RADIUS}
    )
    deny_actions: list[str] = Field(default_factory=list)
    edge_margin: float = Field(default=5.0, ge=0)
    review_sample_rate: float = Field(default=0.2, ge=0, le=1)
    model: ModelPolicy = Field(default_factory=ModelPolicy)
    calibration: CalibrationPolicy = Field(default_factory=CalibrationPolicy)
    default_propose_at: float = 60.0
    default_execute_at: float = 90.0
    proposal_expiry_seconds: dict[Severity, int] = Field(
        default_factory=lambda: dict(DEFAULT_PROPOSAL_EXPIRY_SECONDS)
    )

    @field_validator("agent_autonomy", mode="before")
    @classmethod
    def _agent_autonomy(cls, value: Any) -> Any:
        return _coerce_autonomy(value)

    @field_validator("action_autonomy", mode="before")
    @classmethod
    def _action_autonomy(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _coerce_autonomy(v) for k, v in value.items()}
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value

    @field_validator("blast_radius")
    @classmethod
    def _default_budget(cls, value: dict[str, BlastRadiusBudget]) -> dict[str, BlastRadiusBudget]:
        return (
            value
            if DEFAULT_BUDGET_KEY in value
            else {DEFAULT_BUDGET_KEY: DEFAULT_BLAST_RADIUS, **value}
        )

    @field_validator("proposal_expiry_seconds")
    @classmethod
    def _expiry(cls, value: dict[Severity, int]) -> dict[Severity, int]:
        for severity, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"{severity.value}: expiry must be positive, got {seconds}")
        return {**DEFAULT_PROPOSAL_EXPIRY_SECONDS, **value}

    @model_validator(mode="after")
    def _threshold_order(self) -> PolicyConfig:
        if self.default_propose_at > self.default_execute_at:
            raise ValueError(
                f"default_propose_at {self.default_propose_at} is above "
                f"default_execute_at {self.default_execute_at}"
            )
        return self


def budget_for(action: str, config: PolicyConfig) -> BlastRadiusBudget:
    """The blast-radius budget of `action`: its own entry, else `*`, else 10 an hour."""
    budgets = config.blast_radius
    return budgets.get(action) or budgets.get(DEFAULT_BUDGET_KEY) or DEFAULT_BLAST_RADIUS


def proposal_expiry(severity: Severity, config: PolicyConfig) -> timedelta:
    """How long a proposal for an incident of `severity` waits before it expires and escalates."""
    seconds = config.proposal_expiry_seconds.get(
        severity, DEFAULT_PROPOSAL_EXPIRY_SECONDS[severity]
    )
    return timedelta(seconds=seconds)
