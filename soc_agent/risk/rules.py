"""Risk rules: how many points an alert adds to each entity it names.

A rule file holds `rules:`, each with a CEL `when` and `points` (a number, or a
CEL expression giving one) over three names: `alert` (as playbooks see it),
`entity` (`type`, `value`, `role`) and `history` (what the entity gathered in
the window before this alert: `alerts`, `total`, `tactics`, `techniques`,
`rules`). A rule that cannot be evaluated is reported by id, never read as
"did not fire".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from soc_agent.errors import ConfigError, ExpressionError
from soc_agent.models import EntityType
from soc_agent.models.alert import ALERT_CONTEXT_FIELDS
from soc_agent.playbooks.expressions import (
    EvaluationError,
    attribute_reads,
    attribute_references,
    compile_expression,
    evaluate,
    free_variables,
    unknown_functions,
)
from soc_agent.yaml_input import locate, read_model

__all__ = [
    "RULE_NAMES",
    "RiskRule",
    "RiskRules",
    "Score",
    "load_risk_rules",
    "shipped_risk_rules_dir",
]

RULE_NAMES = frozenset({"alert", "entity", "history"})
MIN_POINTS, MAX_POINTS = -100, 1000
DEFAULT_ENTITY_TYPES = (
    EntityType.HOST,
    EntityType.USER,
    EntityType.IP,
    EntityType.CLOUD_RESOURCE,
)


class RiskRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    description: str = Field(min_length=1, max_length=500)
    when: str = Field(default="true", max_length=4096, description="CEL; the rule fires when true")
    points: int | str = Field(
        description=f"points it adds ({MIN_POINTS}..{MAX_POINTS}), or a CEL expression giving them"
    )
    entities: list[EntityType] = Field(
        default_factory=lambda: list(DEFAULT_ENTITY_TYPES),
        min_length=1,
        description="the entity types it scores",
    )

    @field_validator("when")
    @classmethod
    def _when_compiles(cls, value: str) -> str:
        _check_expression(value)
        return value

    @field_validator("points")
    @classmethod
    def _points(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if not MIN_POINTS <= value <= MAX_POINTS:
                raise ValueError(f"points must lie in {MIN_POINTS}..{MAX_POINTS}")
        else:
            _check_expression(value)
        return value


class RiskRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[RiskRule] = Field(min_length=1, max_length=500)


_FIELDS: dict[str, frozenset[str]] = {
    "alert": ALERT_CONTEXT_FIELDS,
    "entity": frozenset({"type", "value", "role", "criticality"}),
    "history": frozenset({"alerts", "total", "tactics", "techniques", "rules"}),
}


def _check_expression(expression: str) -> None:
    """Compiles, reads only what risk rules are given, calls only known functions."""
    try:
        compile_expression(expression)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    unknown = free_variables(expression) - RULE_NAMES
    if unknown:
        raise ValueError(
            f"unknown name(s) {', '.join(sorted(unknown))}: risk rules read "
            f"{', '.join(sorted(RULE_NAMES))}"
        )
    for function in sorted(unknown_functions(expression)):
        raise ValueError(f"unknown function {function!r}")
    for name, known in _FIELDS.items():
        for attribute in sorted(attribute_references(expression, name) - known):
            hint = difflib.get_close_matches(attribute, sorted(known), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"{name} has no field {attribute!r}{suggestion}")


@dataclass(frozen=True)
class Score:
    """What the rules gave one entity for one alert."""

    points: int
    fired: tuple[tuple[str, int], ...]  # (rule id, points) of each rule that fired
    unevaluated: tuple[str, ...]  # "rule id: error" of each rule that could not be evaluated


@dataclass(frozen=True)
class RiskRules:
    rules: tuple[RiskRule, ...]

    @cached_property
    def _alert_fields(self) -> frozenset[str] | None:
        """The alert fields any rule reads; None when one reads the alert as a whole."""
        fields: set[str] = set()
        for rule in self.rules:
            for expression in (rule.when, rule.points):
                if not isinstance(expression, str):
                    continue
                read = attribute_reads(expression, "alert")
                if read is None:
                    return None
                fields |= read
        return frozenset(fields)

    def alert_view(self, alert: Mapping[str, Any]) -> Mapping[str, Any]:
        """The alert context (`Alert.context()`) cut to the fields the rules read: every
        rule sees the same values, and the CEL layer converts a few fields instead of the
        whole alert (its original document included) for each entity scored."""
        fields = self._alert_fields
        if fields is None:
            return alert
        return {name: alert[name] for name in fields if name in alert}

    def score(
        self,
        alert: Mapping[str, Any],
        entity: Mapping[str, Any],
        history: Mapping[str, Any],
    ) -> Score:
        """Every rule for this entity type, in order; points summed and clamped."""
        context = {"alert": alert, "entity": entity, "history": history}
        fired: list[tuple[str, int]] = []
        unevaluated: list[str] = []
        for rule in self.rules:
            if entity["type"] not in rule.entities:
                continue
            try:
                if evaluate(rule.when, context) is not True:
                    continue
                points = _points(rule, context)
            except (EvaluationError, ValueError) as exc:
                unevaluated.append(f"{rule.id}: {exc}")
                continue
            if points:
                fired.append((rule.id, points))
        total = max(MIN_POINTS, min(MAX_POINTS, sum(p for _, p in fired)))
        return Score(total, tuple(fired), tuple(unevaluated))


def _points(rule: RiskRule, context: Mapping[str, Any]) -> int:
    if isinstance(rule.points, int):
        return rule.points
    value = evaluate(rule.points, context)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"points gave {type(value).__name__}, not a number")
    return max(MIN_POINTS, min(MAX_POINTS, round(value)))


def shipped_risk_rules_dir() -> Path:
    """The risk rules installed with soc-agent (beside the shipped playbooks)."""
    return Path(str(files("soc_agent_playbooks").joinpath("risk_rules")))


def _rule_files(sources: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for source in sources:
        if source.is_dir():
            out.extend(sorted(p for p in source.iterdir() if p.suffix in (".yaml", ".yml")))
        elif source.is_file():
            out.append(source)
        else:
            raise ConfigError("no such risk rules file or directory", source=str(source))
    return out


def load_risk_rules(sources: Iterable[Path]) -> RiskRules:
    """Every rule of the files (or directories of them); errors name file, line and field,
    and a rule id used twice names both files."""
    rules: list[RiskRule] = []
    where: dict[str, Path] = {}
    for path in _rule_files(sources):
        parsed, node = read_model(path, RiskRuleFile, "risk rules file")
        for index, rule in enumerate(parsed.rules):
            if rule.id in where:
                raise ConfigError(
                    f"risk rule id {rule.id!r} is already used by {where[rule.id]}",
                    source=str(path),
                    key=f"rules.{index}.id",
                    line=locate(node, ("rules", index, "id")),
                )
            where[rule.id] = path
            rules.append(rule)
    return RiskRules(tuple(rules))
