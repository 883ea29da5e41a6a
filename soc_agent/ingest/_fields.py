"""Shared helpers for the normalizers: field access, typed reads, times, entities, alerts.

Every helper that reads a vendor field either returns a usable value or raises
`NormalizationError` naming the format and the field, so a malformed record
becomes a dead letter with a reason a person can act on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import ValidationError

from soc_agent.errors import NormalizationError
from soc_agent.models import Alert, Entity, EntityType, Rule, Severity
from soc_agent.models.alert import (
    ENTITIES_TRUNCATED,
    ENTITIES_TRUNCATED_TYPES,
    MAX_ENTITIES,
    clean_aliases,
    merge_aliases,
)
from soc_agent.models.names import host_names, user_names

__all__ = [
    "MAX_ATTRIBUTE_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_ENTITIES",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_TITLE_CHARS",
    "TRUNCATION_MARKER",
    "AlertDraft",
    "EntitySet",
    "TimeUnit",
    "as_list",
    "canonical_hash",
    "get",
    "looks_like_ip",
    "opt_number",
    "opt_str",
    "parse_time",
    "req_str",
    "severity_from_word",
    "short",
    "tactic_name",
    "technique_ids",
    "truncate",
    "type_name",
]

MAX_ID_CHARS = 256
MAX_TITLE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 16384
MAX_LABEL_CHARS = 1024
MAX_ATTRIBUTE_CHARS = 1024
TRUNCATION_MARKER = "…[truncated]"

TimeUnit = Literal["iso", "epoch_s", "epoch_ms", "auto"]

_MISSING = object()


def _lookup(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return _MISSING
    # Longest dotted key first: "kibana.alert.rule.name" may be stored flat, nested,
    # or half and half ("kibana.alert.rule": {"name": ...}).
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            found = _lookup(node[key], parts[cut:])
            if found is not _MISSING:
                return found
    return _MISSING


def get(doc: Any, path: str, default: Any = None) -> Any:
    """Value at a dotted path, whether the keys are nested, flattened or mixed."""
    found = _lookup(doc, path.split("."))
    return default if found is _MISSING else found


def short(value: Any, limit: int = 60) -> str:
    """A value rendered for an error message: repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    """A JSON value's kind as error messages name it: string, object, array, null, bool."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


def opt_str(doc: Any, path: str, fmt: str) -> str | None:
    """A scalar field as a stripped string; absent or empty is None, an object is an error."""
    value = get(doc, path)
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise NormalizationError(f"field '{path}' must be a string, got bool", format=fmt)
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    raise NormalizationError(f"field '{path}' must be a string, got {type_name(value)}", format=fmt)


def req_str(doc: Any, path: str, fmt: str) -> str:
    value = opt_str(doc, path, fmt)
    if value is None:
        raise NormalizationError(f"missing required field '{path}'", format=fmt)
    return value


def opt_number(doc: Any, path: str, fmt: str) -> float | None:
    """A numeric field; numeric strings are accepted, anything else is an error."""
    value = get(doc, path)
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise NormalizationError(f"field '{path}' must be a number, got {short(value)}", format=fmt)
    return number


def as_list(value: Any) -> list[Any]:
    """ECS/Splunk fields may hold one value or many."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _from_epoch(number: float, unit: TimeUnit) -> datetime:
    if unit == "epoch_ms":
        number /= 1000.0
    elif unit in ("epoch_s", "auto") and abs(number) >= 1e11:
        # Seconds past the year 5138 are milliseconds in practice (CrowdStrike's
        # legacy ProcessStartTime is documented as seconds yet ships as ms).
        number /= 1000.0
    return datetime.fromtimestamp(number, tz=UTC)


def parse_time(value: Any, *, unit: TimeUnit, fmt: str, path: str) -> datetime:
    """A vendor timestamp as a UTC datetime (naive ISO times are taken as UTC)."""
    if value is None:
        raise NormalizationError(f"missing required field '{path}'", format=fmt)
    try:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise TypeError
        if isinstance(value, int | float):
            if unit == "iso" or not math.isfinite(value):
                raise TypeError
            return _from_epoch(float(value), unit)
        if not isinstance(value, str) or not value.strip():
            raise TypeError
        text = value.strip()
        if unit != "iso":
            try:
                return _from_epoch(float(text), unit)
            except ValueError:
                if unit != "auto":
                    raise
        parsed = datetime.fromisoformat(text)
        # Stored in UTC so alerts from different sources compare and serialise alike.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        expected = {"iso": "an ISO 8601 time", "epoch_s": "epoch seconds"}.get(
            unit, "epoch milliseconds" if unit == "epoch_ms" else "a timestamp"
        )
        raise NormalizationError(
            f"field '{path}' must be {expected}, got {short(value)}", format=fmt
        ) from exc


def canonical_hash(doc: Any, length: int = 32) -> str:
    """Hex digest of the canonical JSON of a document (sorted keys, no spaces)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


_WORDS = {
    "informational": Severity.INFORMATIONAL,
    "info": Severity.INFORMATIONAL,
    "information": Severity.INFORMATIONAL,
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "high": Severity.HIGH,
    "critical": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
}


def severity_from_word(word: str | None) -> Severity | None:
    """Map a severity word onto the scale; None if it is not a known word.

    `unknown` and friends are deliberately not mapped: each normalizer decides, and
    the shipped ones use MEDIUM so an unknown severity never hides an alert.
    """
    if word is None:
        return None
    return _WORDS.get(word.strip().lower())


_TECHNIQUE = re.compile(r"^T\d{4}(?:\.\d{3})?$")


def technique_ids(values: Iterable[Any]) -> list[str]:
    """Valid MITRE ATT&CK technique ids among `values`, upper-cased, in order, deduplicated."""
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            continue
        tid = raw.strip().upper()
        if _TECHNIQUE.match(tid) and tid not in out:
            out.append(tid)
    return out


_TACTICS = {
    "TA0043": "Reconnaissance",
    "TA0042": "Resource Development",
    "TA0001": "Initial Access",
    "TA0002": "Execution",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
    "TA0011": "Command and Control",
    "TA0010": "Exfiltration",
    "TA0040": "Impact",
}
_TACTIC_KEYS = {re.sub(r"[^a-z]", "", name.lower()): name for name in _TACTICS.values()}


def tactic_name(value: Any) -> str | None:
    """Canonical MITRE ATT&CK enterprise tactic name for a name or TA id, else None.

    Accepts "Defense Evasion", "defense-evasion", "DefenseEvasion" and "TA0005".
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.upper() in _TACTICS:
        return _TACTICS[text.upper()]
    return _TACTIC_KEYS.get(re.sub(r"[^a-z]", "", text.lower()))


_HOSTNAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_.$-]*$")


@dataclass
class EntitySet:
    """Collects entities, silently dropping values the model rejects.

    Invalid values (a "-" as IP, an empty string, a bracketed hostname, a value past
    the model's length limit) are counted in `dropped` rather than failing the alert.
    The first `limit` entities are kept; every value offered after that is counted in
    `overflow` by entity type without being validated (so a padded alert costs little
    more than a normal one), unless the same value is kept already.
    """

    limit: int = MAX_ENTITIES
    items: list[Entity] = field(default_factory=list)
    dropped: int = 0
    overflow: Counter[str] = field(default_factory=Counter)
    _seen: set[tuple[str, str | None]] = field(default_factory=set)
    _kept: set[tuple[EntityType, str]] = field(default_factory=set)
    _by_name: dict[tuple[EntityType, str | None, str], int] = field(default_factory=dict)

    def add(
        self,
        kind: EntityType,
        value: Any,
        role: str | None = None,
        /,
        **attributes: Any,
    ) -> None:
        # Positional-only, so an attribute may be called `kind`, `value` or `role`.
        # Users and hosts go through the identity rule even when added by one name, so
        # `CORP\\mokafor` from any normalizer or mapping is the same user.
        for one in as_list(value):
            if kind is EntityType.USER and isinstance(one, str | int):
                self.add_user(role, account=one, attributes=attributes)
            elif kind is EntityType.HOST and isinstance(one, str):
                self.add_host(one, role, **attributes)
            else:
                self._add_one(kind, one, role, attributes)

    def add_user(
        self,
        role: str | None = None,
        /,
        *,
        attributes: Mapping[str, Any] | None = None,
        **names: Any,
    ) -> None:
        """A user by every name the record gives (`account`, `upn`, `domain`, `email`,
        `object_id`, `sid`, vendor ids): value and aliases by `models.names.user_names`."""
        value, aliases = user_names(**names)
        if value is not None:
            attrs = {"domain": names.get("domain"), **(attributes or {})}
            self._add_one(EntityType.USER, value, role, attrs, aliases)

    def add_host(
        self,
        name: Any,
        role: str | None = None,
        /,
        *,
        fqdn: Any = None,
        ids: Mapping[str, Any] | None = None,
        **attributes: Any,
    ) -> None:
        """A host by its reported name, FQDN and device ids (`models.names.host_names`)."""
        for one in as_list(name) or [None]:
            value, aliases = host_names(one, fqdn=fqdn, **(ids or {}))
            if value is not None:
                self._add_one(EntityType.HOST, value, role, attributes, aliases)

    def _add_one(
        self,
        kind: EntityType,
        value: Any,
        role: str | None,
        attributes: Mapping[str, Any],
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(value, bool) or value is None:
            return
        if len(self.items) >= self.limit:
            self._past_limit(kind, value)
            return
        if isinstance(value, int) and kind is EntityType.USER:
            value = str(value)
        if not isinstance(value, str):
            self.dropped += 1
            return
        value = value.strip()
        if kind is EntityType.EMAIL and "<" in value:
            # SMTP envelopes write <user@example.com>, headers `Display Name <user@example.com>`.
            value = parseaddr(value)[1] or value.strip("<>")
        if not value or value in {"-", "N/A", "n/a", "null", "unknown"}:
            return
        if kind in (EntityType.HOST, EntityType.DOMAIN) and not _HOSTNAME.match(value):
            self.dropped += 1
            return
        if kind is EntityType.FILE_HASH and set(value) == {"0"}:
            return  # vendors send all-zero hashes for "not computed"
        attrs = {
            k: truncate(str(v), MAX_ATTRIBUTE_CHARS)
            for k, v in attributes.items()
            if v is not None and not isinstance(v, dict | list) and str(v).strip() != ""
        }
        clean, bad = clean_aliases(kind, aliases or {})
        self.dropped += bad
        try:
            entity = Entity(type=kind, value=value, role=role, attributes=attrs, aliases=clean)
        except ValidationError:
            self.dropped += 1
            return
        marker = (entity.key, entity.role)
        if marker in self._seen:
            return
        if self._merged(entity):
            return
        self._seen.add(marker)
        self._kept.add((entity.type, entity.value))
        self.items.append(entity)
        for name in entity.names:
            self._by_name.setdefault((entity.type, entity.role, name), len(self.items) - 1)

    def _merged(self, entity: Entity) -> bool:
        """Fold an entity sharing a name with a kept one of its type and role into that one."""
        for name in entity.names:
            index = self._by_name.get((entity.type, entity.role, name))
            if index is not None:
                merged = merge_aliases(self.items[index], entity)
                self.items[index] = merged
                for alias in merged.names:
                    self._by_name.setdefault((entity.type, entity.role, alias), index)
                return True
        return False

    def unread(self, what: str, count: int) -> None:
        """Count `count` vendor records a normalizer did not read (past its own cap)."""
        if count > 0:
            self.overflow[what] += count

    def _past_limit(self, kind: EntityType, value: Any) -> None:
        # Counted, not validated: padding must not cost a model validation per value.
        # A value kept already (in any role) is not lost; the rest, repeats included, is.
        if isinstance(value, str):
            text = value.strip()
            if not text or text in {"-", "N/A", "n/a", "null", "unknown"}:
                return
            if kind.case_insensitive:
                text = text.lower()
            if kind is EntityType.DOMAIN:
                text = text.rstrip(".")
            if (kind, text) in self._kept:
                return
        self.overflow[kind.value] += 1

    def add_ip_or_host(self, value: Any, role: str | None = None, /, **attributes: Any) -> None:
        """Splunk/CIM `src`/`dest` hold an IP or a hostname; pick the right type."""
        for one in as_list(value):
            if not isinstance(one, str):
                continue
            if looks_like_ip(one):
                self._add_one(EntityType.IP, one, role, attributes)
            else:
                self.add_host(one, role, **attributes)


def looks_like_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


@dataclass
class AlertDraft:
    """Everything a normalizer extracted, turned into an `Alert` by `build()`.

    `build()` applies the shared limits: titles and descriptions are truncated with
    `TRUNCATION_MARKER`, an over-long id is an error (it would not be stable), labels
    are cut to `MAX_LABEL_CHARS`, and model validation errors become
    `NormalizationError`. Entities past `max_entities` are counted in the
    `ENTITIES_TRUNCATED` and `ENTITIES_TRUNCATED_TYPES` labels.
    """

    format: str
    vendor: str
    product: str
    original: dict[str, Any]
    vendor_id: str | None = None
    title: str | None = None
    description: str | None = None
    rule_id: str | None = None
    rule_name: str | None = None
    rule_description: str | None = None
    severity: Severity | None = None
    risk_score: float | None = None
    created_at: datetime | None = None
    entities: EntitySet = field(default_factory=EntitySet)
    techniques: list[Any] = field(default_factory=list)  # filtered to valid T-ids in build()
    tactics: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    max_entities: InitVar[int] = MAX_ENTITIES

    def __post_init__(self, max_entities: int) -> None:
        self.entities.limit = max_entities

    def label(self, key: str, value: Any) -> None:
        if value is None or isinstance(value, dict) or value == "" or value == []:
            return
        if isinstance(value, list):
            value = ",".join(str(v) for v in value if not isinstance(v, dict | list))
        self.labels[key] = value

    def tactic(self, value: Any) -> None:
        name = tactic_name(value)
        if name and name not in self.tactics:
            self.tactics.append(name)

    def build(self, received_at: datetime | None) -> Alert:
        fmt = self.format
        if self.vendor_id is not None:
            alert_id = f"{fmt}:{self.vendor_id}"
            if len(alert_id) > MAX_ID_CHARS:
                raise NormalizationError(
                    f"alert id is {len(self.vendor_id)} characters, longer than the "
                    f"{MAX_ID_CHARS - len(fmt) - 1} allowed",
                    format=fmt,
                )
        else:
            alert_id = f"{fmt}:{canonical_hash(self.original)}"
        if not self.title:
            raise NormalizationError("no title: the record names no rule or title", format=fmt)
        if self.created_at is None:
            raise NormalizationError("no time: the record carries no usable timestamp", format=fmt)
        if self.severity is None:
            raise NormalizationError("no severity", format=fmt)
        risk = self.risk_score
        if risk is not None and not 0 <= risk <= 100:
            self.label("risk_score_raw", risk)
            risk = None
        if self.entities.dropped:
            self.labels["ingest.entities_dropped"] = self.entities.dropped
        overflow = self.entities.overflow
        if overflow:
            self.labels[ENTITIES_TRUNCATED] = overflow.total()
            by_count = sorted(overflow.items(), key=lambda kv: (-kv[1], kv[0]))
            self.labels[ENTITIES_TRUNCATED_TYPES] = ",".join(f"{k}={n}" for k, n in by_count)
        labels = {
            truncate(str(k), 128): truncate(str(v), MAX_LABEL_CHARS) for k, v in self.labels.items()
        }
        rule_name = truncate(self.rule_name or self.title, MAX_TITLE_CHARS)
        rule_desc = self.rule_description
        try:
            return Alert(
                id=alert_id,
                format=fmt,
                vendor=truncate(self.vendor, 256),
                product=truncate(self.product, 256),
                source_id=self.vendor_id,
                rule=Rule(
                    id=truncate(self.rule_id, MAX_ID_CHARS) if self.rule_id else None,
                    name=rule_name,
                    description=truncate(rule_desc, MAX_DESCRIPTION_CHARS) if rule_desc else None,
                ),
                title=truncate(self.title, MAX_TITLE_CHARS),
                description=(
                    truncate(self.description, MAX_DESCRIPTION_CHARS) if self.description else None
                ),
                severity=self.severity,
                risk_score=risk,
                created_at=self.created_at,
                received_at=received_at or datetime.now(UTC),
                entities=self.entities.items,
                techniques=technique_ids(self.techniques),
                tactics=self.tactics,
                labels=labels,
                original=self.original,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise NormalizationError(
                f"invalid alert field '{where}': {first.get('msg', 'invalid')}", format=fmt
            ) from exc
