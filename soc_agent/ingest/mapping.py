"""Declarative field mappings: a YAML file that maps any other JSON alert onto `Alert`.

A mapping says when it applies (`match`: dotted-path conditions, all must hold)
and where each Alert field comes from (`fields`). Paths are dotted and work on
nested and flattened keys alike. See `samples/mappings/example.yaml`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from soc_agent.errors import ConfigError, NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    as_list,
    get,
    opt_number,
    opt_str,
    parse_time,
    req_str,
    severity_from_word,
)
from soc_agent.models import Alert, EntityType, Severity
from soc_agent.yaml_input import compose, safe_load

__all__ = [
    "EntityField",
    "FieldMapping",
    "MappedFields",
    "MatchCondition",
    "RuleFields",
    "SeverityField",
    "TimeField",
    "load_mappings",
]

_BUILTIN = ("elastic", "ocsf", "suricata", "guardduty", "ms_graph", "crowdstrike", "splunk")
_PATH_PATTERN = r"^[^\s]+$"


def _path() -> Any:
    return Field(min_length=1, max_length=256, pattern=_PATH_PATTERN)


def _opt_path() -> Any:
    return Field(default=None, min_length=1, max_length=256, pattern=_PATH_PATTERN)


Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchCondition(_Strict):
    """`field` equals a value, or exists (`exists: true`) / is absent (`exists: false`)."""

    field: str = _path()
    equals: Scalar | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> MatchCondition:
        if (self.equals is None) == (self.exists is None):
            raise ValueError("give exactly one of 'equals' or 'exists'")
        return self

    def holds(self, doc: dict[str, Any]) -> bool:
        value = get(doc, self.field)
        if self.exists is not None:
            return (value is not None) is self.exists
        # bool is an int in Python: `equals: true` must not match 1, nor `equals: 1` true.
        if isinstance(value, bool) or isinstance(self.equals, bool):
            return value is self.equals
        return bool(value == self.equals)


class RuleFields(_Strict):
    id: str | None = _opt_path()
    name: str | None = _opt_path()
    description: str | None = _opt_path()


class SeverityField(_Strict):
    """Where the severity is and how vendor values map onto the scale.

    Without `map`, the value is read as a severity word or a 0-100 score.
    `default` applies when the field is absent or its value is not in `map`.
    """

    path: str = _path()
    map: dict[str, Severity] = Field(default_factory=dict)
    default: Severity | None = None

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_key(k): v for k, v in value.items()}
        return value


class TimeField(_Strict):
    path: str = _path()
    format: Literal["iso", "epoch_s", "epoch_ms"] = "iso"


class EntityField(_Strict):
    type: EntityType
    path: str = _path()
    role: str | None = Field(default=None, max_length=64)


class MappedFields(_Strict):
    id: str | None = _opt_path()
    title: str = _path()
    description: str | None = _opt_path()
    rule: RuleFields = Field(default_factory=RuleFields)
    severity: SeverityField
    risk_score: str | None = _opt_path()
    created_at: TimeField
    entities: list[EntityField] = Field(default_factory=list, max_length=256)
    techniques: str | None = _opt_path()
    labels: dict[str, str] = Field(default_factory=dict)


class FieldMapping(_Strict):
    """One declarative mapping; `name` becomes the Alert's `format`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    vendor: str = Field(min_length=1, max_length=256)
    product: str = Field(min_length=1, max_length=256)
    match: list[MatchCondition] = Field(min_length=1)
    fields: MappedFields
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file the mapping was loaded from, if any."""
        return self._source

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        if value in _BUILTIN:
            raise ValueError(f"'{value}' is a built-in format name; choose another")
        return value

    def matches(self, doc: dict[str, Any]) -> bool:
        return all(cond.holds(doc) for cond in self.match)

    def normalize(
        self,
        doc: dict[str, Any],
        *,
        received_at: datetime | None = None,
        max_entities: int = MAX_ENTITIES,
    ) -> Alert:
        f, spec = self.name, self.fields
        draft = AlertDraft(
            format=f,
            vendor=self.vendor,
            product=self.product,
            original=doc,
            max_entities=max_entities,
        )
        if spec.id is not None:
            draft.vendor_id = req_str(doc, spec.id, f)
        draft.title = req_str(doc, spec.title, f)
        draft.description = opt_str(doc, spec.description, f) if spec.description else None
        rule = spec.rule
        draft.rule_id = opt_str(doc, rule.id, f) if rule.id else None
        draft.rule_name = opt_str(doc, rule.name, f) if rule.name else None
        draft.rule_description = opt_str(doc, rule.description, f) if rule.description else None
        draft.severity = _severity(doc, spec.severity, f)
        if spec.risk_score:
            draft.risk_score = opt_number(doc, spec.risk_score, f)
        when = get(doc, spec.created_at.path)
        if when is None:
            raise NormalizationError(f"missing required field '{spec.created_at.path}'", format=f)
        draft.created_at = parse_time(
            when, unit=spec.created_at.format, fmt=f, path=spec.created_at.path
        )
        for entity in spec.entities:
            draft.entities.add(entity.type, get(doc, entity.path), entity.role)
        if spec.techniques:
            draft.techniques += [t for t in as_list(get(doc, spec.techniques)) if t]
        for label, path in spec.labels.items():
            value = get(doc, path)
            if not isinstance(value, dict | list):
                draft.label(label, value)
        return draft.build(received_at)


def _key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _severity(doc: dict[str, Any], spec: SeverityField, fmt: str) -> Severity:
    value = get(doc, spec.path)
    if isinstance(value, dict | list):
        raise NormalizationError(
            f"field '{spec.path}' must be a severity value, got {type(value).__name__}", format=fmt
        )
    if value is not None and not isinstance(value, bool):
        if spec.map:
            found = spec.map.get(_key(value))
            if found is not None:
                return found
        else:
            word = severity_from_word(str(value))
            if word is not None:
                return word
            score = opt_number(doc, spec.path, fmt) if isinstance(value, int | float) else None
            if score is not None and 0 <= score <= 100:
                return Severity.from_score(score)
    if spec.default is not None:
        return spec.default
    raise NormalizationError(
        f"field '{spec.path}' has no severity mapping for {value!r:.60} and no default",
        format=fmt,
    )


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location, or its nearest parent."""
    node, line = root, (root.start_mark.line + 1) if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node, line = value_node, key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _load_one(path: Path) -> FieldMapping:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read mapping file: {exc}", source=source) from exc
    try:
        data = safe_load(text)
        root = compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc}", source=source, line=line) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            "a mapping file must hold one YAML mapping (name, match, fields)", source=source, line=1
        )
    try:
        mapping = FieldMapping.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        key = ".".join(str(p) for p in loc) or None
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(
            f"{error['msg']}{extra}", source=source, key=key, line=_line_of(root, loc)
        ) from exc
    mapping._source = source
    return mapping


def load_mappings(paths: Iterable[Path]) -> list[FieldMapping]:
    """Load and validate mapping files (a directory means its *.yaml / *.yml files).

    Raises `ConfigError` naming the file, the line when known, and the field.
    """
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    out: list[FieldMapping] = []
    seen: dict[str, str] = {}
    for file in files:
        mapping = _load_one(file)
        if mapping.name in seen:
            raise ConfigError(
                f"mapping name '{mapping.name}' is already used by {seen[mapping.name]}",
                source=str(file),
                key="name",
            )
        seen[mapping.name] = str(file)
        out.append(mapping)
    return out
