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

import regex
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

from soc_agent.errors import ConfigError, NormalizationError, RecordFiltered
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
    tactic_name,
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
    "TacticField",
    "TimeField",
    "ValueField",
    "load_mappings",
]

# detect.FORMATS (which imports this module, so the names are repeated here; a test
# keeps the two equal).
_BUILTIN = (
    "elastic",
    "ocsf",
    "suricata",
    "guardduty",
    "ms_graph",
    "crowdstrike",
    "splunk",
    "soc_risk",
    "crowdstrike_alert",
    "sentinel",
    "asff",
    "wazuh",
)
_PATH_PATTERN = r"^[^\s]+$"


def _path() -> Any:
    return Field(min_length=1, max_length=256, pattern=_PATH_PATTERN)


def _opt_path() -> Any:
    return Field(default=None, min_length=1, max_length=256, pattern=_PATH_PATTERN)


Scalar = str | int | float | bool

# A pattern is the responder's, the text it runs on the attacker's: each search is
# bounded in time (the `regex` library's timeout), and only the first characters are read.
_PATTERN_SECONDS = 0.05
_PATTERN_INPUT_CHARS = 8192


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compiled(value: str | None) -> str | None:
    if value is not None:
        try:
            compiled = regex.compile(value)
        except regex.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if compiled.groups > 1:
            raise ValueError("a pattern may capture at most one group (the value to keep)")
    return value


def _extract(pattern: str | None, value: Any, where: str, fmt: str) -> Any:
    """`value` (each element of a list) through `pattern`: the captured group, or the
    whole match; values that do not match are dropped."""
    if pattern is None or value is None:
        return value
    if isinstance(value, list):
        found = [_extract(pattern, v, where, fmt) for v in value]
        return [v for v in found if v is not None]
    if isinstance(value, dict):
        return None
    text = str(value)[:_PATTERN_INPUT_CHARS]
    try:
        match = regex.search(pattern, text, timeout=_PATTERN_SECONDS)
    except TimeoutError:
        raise NormalizationError(
            f"the pattern of {where} took longer than {_PATTERN_SECONDS}s on this record",
            format=fmt,
        ) from None
    if match is None:
        return None
    return match.group(1) if match.re.groups else match.group(0)


class MatchCondition(_Strict):
    """One test of `field`: `equals` a value, `one_of` several, `exists` (true/false),
    `at_least` a number (a numeric string counts), or `matches` a regular expression."""

    field: str = _path()
    equals: Scalar | None = None
    one_of: list[Scalar] | None = Field(default=None, min_length=1, max_length=256)
    exists: bool | None = None
    at_least: float | None = None
    matches: str | None = Field(default=None, max_length=1024)

    _check_pattern = field_validator("matches")(_compiled)

    @model_validator(mode="after")
    def _one_test(self) -> MatchCondition:
        tests = (self.equals, self.one_of, self.exists, self.at_least, self.matches)
        if sum(t is not None for t in tests) != 1:
            raise ValueError(
                "give exactly one of 'equals', 'one_of', 'exists', 'at_least' or 'matches'"
            )
        return self

    def holds(self, doc: dict[str, Any]) -> bool:
        value = get(doc, self.field)
        if self.exists is not None:
            return (value is not None) is self.exists
        if self.at_least is not None:
            number = _number(value)
            return number is not None and number >= self.at_least
        if self.matches is not None:
            if value is None or isinstance(value, dict | list):
                return False
            text = str(value)[:_PATTERN_INPUT_CHARS]
            try:
                return regex.search(self.matches, text, timeout=_PATTERN_SECONDS) is not None
            except TimeoutError:
                return False
        wanted = self.one_of if self.one_of is not None else [self.equals]
        return any(_same(value, w) for w in wanted)

    def describe(self, doc: dict[str, Any]) -> str:
        """Why `doc` fails this condition, for a filtered record's reason."""
        value = get(doc, self.field)
        shown = "absent" if value is None else f"{str(value)[:60]!r}"
        if self.exists is not None:
            return f"{self.field} is {shown}, must {'exist' if self.exists else 'be absent'}"
        if self.at_least is not None:
            return f"{self.field} is {shown}, below {self.at_least:g}"
        if self.matches is not None:
            return f"{self.field} is {shown}, does not match {self.matches!r}"
        wanted = self.one_of if self.one_of is not None else [self.equals]
        return f"{self.field} is {shown}, not {' or '.join(repr(w) for w in wanted)}"


def _same(value: Any, wanted: Any) -> bool:
    # bool is an int in Python: `equals: true` must not match 1, nor `equals: 1` true.
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return bool(value == wanted)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


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
    """An entity at `path`; `pattern` keeps the captured group (or the match) of each value,
    e.g. an IP inside a log line."""

    type: EntityType
    path: str = _path()
    role: str | None = Field(default=None, max_length=64)
    pattern: str | None = Field(default=None, max_length=1024)

    _check_pattern = field_validator("pattern")(_compiled)


class ValueField(_Strict):
    """A label or technique list read at `path`, optionally through `pattern`."""

    path: str = _path()
    pattern: str | None = Field(default=None, max_length=1024)

    _check_pattern = field_validator("pattern")(_compiled)


class TacticField(_Strict):
    """ATT&CK tactics at `path`: names or TA ids as ATT&CK writes them, or the vendor's
    words through `map` (each mapped to a name or id ATT&CK knows)."""

    path: str = _path()
    map: dict[str, str] = Field(default_factory=dict)

    @field_validator("map")
    @classmethod
    def _known_tactics(cls, value: dict[str, str]) -> dict[str, str]:
        for vendor, tactic in value.items():
            if tactic_name(tactic) is None:
                raise ValueError(f"{tactic!r} (for {vendor!r}) is not an ATT&CK tactic")
        return {_key(k): v for k, v in value.items()}


class MappedFields(_Strict):
    id: str | None = _opt_path()
    title: str = _path()
    description: str | None = _opt_path()
    rule: RuleFields = Field(default_factory=RuleFields)
    severity: SeverityField
    risk_score: str | None = _opt_path()
    created_at: TimeField
    entities: list[EntityField] = Field(default_factory=list, max_length=256)
    techniques: ValueField | None = None
    tactics: TacticField | None = None
    labels: dict[str, ValueField] = Field(default_factory=dict)

    @field_validator("techniques", "tactics", mode="before")
    @classmethod
    def _path_alone(cls, value: Any) -> Any:
        """`techniques: rule.mitre.id` is short for `{path: rule.mitre.id}`."""
        return {"path": value} if isinstance(value, str) else value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_paths_alone(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class FieldMapping(_Strict):
    """One declarative mapping; `name` becomes the Alert's `format`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    vendor: str = Field(min_length=1, max_length=256)
    product: str = Field(min_length=1, max_length=256)
    match: list[MatchCondition] = Field(min_length=1)
    keep: list[MatchCondition] = Field(
        default_factory=list,
        description="records this mapping recognises are kept only if these hold too; the "
        "rest are counted as filtered (not alerts, not dead letters)",
    )
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
        for condition in self.keep:
            if not condition.holds(doc):
                raise RecordFiltered(f, condition.describe(doc))
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
        for i, entity in enumerate(spec.entities):
            value = _extract(entity.pattern, get(doc, entity.path), f"entities[{i}]", f)
            for one in as_list(value):
                draft.entities.add(entity.type, one, entity.role)
        if spec.techniques is not None:
            techniques = _read(doc, spec.techniques, "techniques", f)
            draft.techniques += [t for t in as_list(techniques) if t]
        if spec.tactics is not None:
            for raw in as_list(get(doc, spec.tactics.path)):
                draft.tactic(spec.tactics.map.get(_key(raw), raw))
        for label, source in spec.labels.items():
            value = _read(doc, source, f"labels.{label}", f)
            if isinstance(value, list):  # kept, joined with commas (labels are text)
                value = [v for v in value if not isinstance(v, dict | list)]
            if not isinstance(value, dict):
                draft.label(label, value)
        return draft.build(received_at)


def _read(doc: dict[str, Any], source: ValueField, where: str, fmt: str) -> Any:
    return _extract(source.pattern, get(doc, source.path), where, fmt)


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
