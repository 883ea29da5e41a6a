"""The canonical Alert and the entities it observes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ENTITIES_TRUNCATED",
    "ENTITIES_TRUNCATED_TYPES",
    "MAX_ALIASES",
    "MAX_ENTITIES",
    "Alert",
    "Entity",
    "EntityType",
    "Rule",
    "Severity",
    "clean_aliases",
    "merge_aliases",
    "normalise_value",
]

MAX_ENTITIES = 256
"""Entities kept per alert by default (runtime.max_entities_per_alert); more are counted."""
ENTITIES_TRUNCATED = "ingest.entities_truncated"
"""Label: how many entity values the alert named past the cap (not kept)."""
ENTITIES_TRUNCATED_TYPES = "ingest.entities_truncated_types"
"""Label: the same count by entity type, most first: `ip=99744,user=3`."""


class Severity(StrEnum):
    """Five-step severity scale every vendor scale maps onto."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @property
    def score(self) -> int:
        """A 0-100 number for expressions and ordering."""
        return _SEVERITY_SCORE[self]

    @classmethod
    def from_score(cls, value: float) -> Severity:
        """Map a 0-100 vendor score onto the scale (ECS/OCSF/CrowdStrike style)."""
        if value >= 90:
            return cls.CRITICAL
        if value >= 70:
            return cls.HIGH
        if value >= 40:
            return cls.MEDIUM
        if value >= 20:
            return cls.LOW
        return cls.INFORMATIONAL


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}
_SEVERITY_SCORE = {
    Severity.INFORMATIONAL: 10,
    Severity.LOW: 30,
    Severity.MEDIUM: 50,
    Severity.HIGH: 75,
    Severity.CRITICAL: 95,
}


class EntityType(StrEnum):
    HOST = "host"
    USER = "user"
    IP = "ip"
    DOMAIN = "domain"
    URL = "url"
    FILE_HASH = "file_hash"
    PROCESS = "process"
    EMAIL = "email"
    CLOUD_RESOURCE = "cloud_resource"

    @property
    def case_insensitive(self) -> bool:
        """Values of this type compare case-insensitively, so they are stored lower-case."""
        return self in _CASE_INSENSITIVE


_CASE_INSENSITIVE = {
    EntityType.HOST,
    EntityType.DOMAIN,
    EntityType.EMAIL,
    EntityType.FILE_HASH,
    EntityType.USER,
}

MAX_ENTITY_VALUE = 2048
MAX_ALIASES = 16
"""Other names an entity may carry (UPN, SID, object id, FQDN, device ids, ...)."""
_ALIAS_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def normalise_value(kind: EntityType, raw: str) -> str:
    """An entity value as it is stored and compared: stripped, lower-case where the type
    ignores case, domains without the root dot, IPs in canonical form."""
    value = raw.strip()
    if kind.case_insensitive:
        value = value.lower()
    if kind is EntityType.DOMAIN:
        value = value.rstrip(".")
    if kind is EntityType.IP:
        value = _canonical_ip(value)
    if not value:
        raise ValueError("entity value is empty after normalisation")
    return value


class Entity(BaseModel):
    """One observed thing. `value` is normalised so equal things compare equal.

    `role` says how the alert saw it (source, destination, actor, target, ...);
    `attributes` carries typed-as-string extras (hash algorithm, pid, command line,
    cloud provider, ...). `aliases` are the other names the same thing goes by, by
    kind (`upn`, `sam`, `nt_account`, `object_id`, `sid`, `email` for users; `fqdn`,
    `hostname` and device ids for hosts): correlation matches on any of them and a
    connector picks the kind it needs (see `soc_agent.models.names`).
    """

    model_config = ConfigDict(frozen=True)

    type: EntityType
    value: str = Field(min_length=1, max_length=MAX_ENTITY_VALUE)
    role: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict, max_length=MAX_ALIASES)

    @model_validator(mode="after")
    def _normalise(self) -> Entity:
        object.__setattr__(self, "value", normalise_value(self.type, self.value))
        if self.aliases:
            aliases: dict[str, str] = {}
            for kind, raw in self.aliases.items():
                if not _ALIAS_KIND.match(kind):
                    raise ValueError(f"alias kind {kind[:48]!r} is not a lower-case name")
                if not isinstance(raw, str) or len(raw) > MAX_ENTITY_VALUE:
                    raise ValueError(f"alias {kind} is not a name of at most 2048 characters")
                aliases[kind] = normalise_value(self.type, raw)
            object.__setattr__(self, "aliases", aliases)
        return self

    @property
    def key(self) -> str:
        """Identity of the entity for correlation and idempotency: `type:value`."""
        return f"{self.type.value}:{self.value}"

    @classmethod
    def from_key(cls, key: str) -> Entity:
        """`host:WS-01` as an entity (`host:ws-01`); a ValueError names what is wrong."""
        kind, sep, value = key.partition(":")
        try:
            entity_type = EntityType(kind.strip().lower())
        except ValueError:
            known = ", ".join(t.value for t in EntityType)
            raise ValueError(
                f"not an entity key 'type:value': {key[:80]!r} (types: {known})"
            ) from None
        if not sep:
            raise ValueError(f"{key[:80]!r} has no value: write it as 'type:value'")
        try:
            return cls(type=entity_type, value=value)
        except ValidationError:
            raise ValueError(f"not an entity key 'type:value': {key[:80]!r}") from None

    # `names` and `keys` are worked out once per entity (correlation asks for the keys of
    # every entity of an incident for each alert); a copy with other fields drops them.
    @cached_property
    def names(self) -> tuple[str, ...]:
        """The value and every alias, distinct, value first."""
        return tuple(dict.fromkeys((self.value, *self.aliases.values())))

    def name_for(self, kinds: Sequence[str]) -> str:
        """The first of `kinds` this entity has an alias of, else its value: the name a
        connector acting on `kinds` (`upn`, `object_id`, `sam`, ...) can use."""
        for kind in kinds:
            if kind in self.aliases:
                return self.aliases[kind]
        return self.value

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """`type:name` for every name: what correlation and protection match on."""
        return tuple(f"{self.type.value}:{name}" for name in self.names)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        for derived in ("names", "keys"):
            copied.__dict__.pop(derived, None)
        return copied


def clean_aliases(kind: EntityType, aliases: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """The aliases an entity of `kind` may keep, and how many were not names (dropped)."""
    kept: dict[str, str] = {}
    bad = 0
    for alias_kind, raw in aliases.items():
        if len(kept) >= MAX_ALIASES:
            bad += 1
            continue
        try:
            if not isinstance(raw, str) or len(raw) > MAX_ENTITY_VALUE:
                raise ValueError(raw)
            if not _ALIAS_KIND.match(alias_kind):
                raise ValueError(alias_kind)
            kept[alias_kind] = normalise_value(kind, raw)
        except ValueError:
            bad += 1
    return kept, bad


def merge_aliases(kept: Entity, other: Entity) -> Entity:
    """`kept` with `other`'s names added as aliases; a kind `kept` has keeps its name."""
    aliases = dict(kept.aliases)
    if other.value != kept.value and other.value not in aliases.values():
        aliases.setdefault(_value_kind(other), other.value)
    for alias_kind, name in other.aliases.items():
        if len(aliases) >= MAX_ALIASES:
            break
        aliases.setdefault(alias_kind, name)
    if aliases == kept.aliases:
        return kept
    return kept.model_copy(update={"aliases": dict(list(aliases.items())[:MAX_ALIASES])})


def _value_kind(entity: Entity) -> str:
    """The alias kind under which an entity's own value is known (`name` when none says)."""
    for alias_kind, name in entity.aliases.items():
        if name == entity.value:
            return alias_kind
    return "name"


class Rule(BaseModel):
    """The detection rule or signature that produced the alert."""

    id: str | None = None
    name: str
    description: str | None = None


class Alert(BaseModel):
    """Canonical form of one source alert.

    `id` is stable for the same source alert (it is derived from the vendor's
    own id, or from a hash of the original when the vendor has none), so a
    redelivered alert is recognised. `original` holds the source document as
    parsed, untouched.
    """

    id: str = Field(min_length=1, max_length=256)
    format: str
    vendor: str
    product: str
    source_id: str | None = None
    rule: Rule
    title: str = Field(max_length=1024)
    description: str | None = Field(default=None, max_length=16384)
    severity: Severity
    risk_score: float | None = Field(default=None, ge=0, le=100)
    created_at: datetime
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    entities: list[Entity] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    tactics: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    original: dict[str, Any]

    @field_validator("created_at", "received_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("techniques")
    @classmethod
    def _technique_ids(cls, values: list[str]) -> list[str]:
        out: list[str] = []
        for raw in values:
            tid = raw.strip().upper()
            if not _is_technique_id(tid):
                raise ValueError(f"not a MITRE ATT&CK technique id: {raw[:32]!r}")
            if tid not in out:
                out.append(tid)
        return out

    @field_validator("entities")
    @classmethod
    def _dedupe_entities(cls, values: list[Entity]) -> list[Entity]:
        seen: set[tuple[str, str | None]] = set()
        out: list[Entity] = []
        for entity in values:
            marker = (entity.key, entity.role)
            if marker not in seen:
                seen.add(marker)
                out.append(entity)
        return out

    def values_of(self, kind: EntityType) -> list[str]:
        """Distinct entity values of one type, in order of appearance."""
        out: list[str] = []
        for entity in self.entities:
            if entity.type is kind and entity.value not in out:
                out.append(entity.value)
        return out

    @property
    def rule_key(self) -> str:
        """`format:rule id` (or name): the detection rule as incidents and verdicts record it."""
        return f"{self.format}:{self.rule.id or self.rule.name}"

    def context(self) -> dict[str, Any]:
        """The alert as playbook expressions see it (`alert.hosts`, `alert.severity`, ...)."""
        data = self.model_dump(mode="json", exclude={"original"})
        data["severity_score"] = self.severity.score
        data["rule_key"] = self.rule_key
        data["original"] = self.original
        for kind in EntityType:
            data[_PLURAL[kind]] = self.values_of(kind)
        return data


_PLURAL = {
    EntityType.HOST: "hosts",
    EntityType.USER: "users",
    EntityType.IP: "ips",
    EntityType.DOMAIN: "domains",
    EntityType.URL: "urls",
    EntityType.FILE_HASH: "file_hashes",
    EntityType.PROCESS: "processes",
    EntityType.EMAIL: "emails",
    EntityType.CLOUD_RESOURCE: "cloud_resources",
}
# The top-level fields of `Alert.context()`, for checking expressions before they run.
ALERT_CONTEXT_FIELDS = frozenset(
    {*Alert.model_fields, "severity_score", "rule_key", *_PLURAL.values()}
)


@lru_cache(maxsize=65536)
def _canonical_ip(value: str) -> str:
    """Cached: incidents re-validated from the store repeat the same addresses many times."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"not an IP address: {value[:64]!r}") from exc


def _is_technique_id(tid: str) -> bool:
    if not tid.startswith("T") or len(tid) < 5:
        return False
    main, _, sub = tid[1:].partition(".")
    return len(main) == 4 and main.isdigit() and (not sub or (len(sub) == 3 and sub.isdigit()))
