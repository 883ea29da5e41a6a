"""The playbook file format: a pydantic model that is also the published JSON Schema.

Structure lives here; cross-field rules that need the whole document (CEL
compiles, step references, dependency cycles, thresholds order, the
connector catalog) are checked by the loader, which can name file and line.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from soc_agent.models import AutonomyLevel

__all__ = [
    "Budget",
    "Playbook",
    "RespondRule",
    "ScoreRule",
    "Scoring",
    "Step",
    "TargetSpec",
    "export_json_schema",
    "json_schema_text",
    "revert_after_seconds",
]

_ID = r"^[a-z][a-z0-9_]*$"
_RULE_ID = r"^[a-z0-9][a-z0-9_-]*$"
_NAME = r"^[a-z0-9][a-z0-9-]*$"
_DURATION = r"^[1-9][0-9]*[smhd]$"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_EXPRESSION_NOTE = (
    "CEL expression over `alert`, `incident`, `steps` (results of earlier steps) "
    "and `item` (inside for_each)."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Limits on one investigation; when one is reached the investigation does not conclude."""

    max_steps: int = Field(
        default=12,
        ge=1,
        le=500,
        description=(
            "Most connector calls the investigation may make (each for_each item counts one)."
        ),
    )
    max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Wall-clock limit in seconds; running steps are cancelled when it elapses.",
    )


class Step(_Strict):
    """One read-only investigation step: a connector query with templated arguments."""

    id: str = Field(
        pattern=_ID,
        max_length=64,
        description="Unique step id; expressions read its result as `steps.<id>`.",
    )
    description: str | None = Field(default=None, description="What the step looks for and why.")
    connector: str = Field(
        min_length=1, description="Connector name, e.g. `threat_intel`, `asset_inventory`."
    )
    capability: str = Field(
        min_length=1, description="A query capability of the connector, e.g. `lookup`."
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Arguments for the capability. Strings may hold `${CEL}` templates; a string "
            "that is exactly one `${...}` keeps the expression's type."
        ),
    )
    when: str | None = Field(
        default=None,
        description=f"Run the step only if this is true (else it is skipped). {_EXPRESSION_NOTE}",
    )
    for_each: str | None = Field(
        default=None,
        description=(
            "CEL expression yielding a list; the step runs once per element with `item` "
            "in scope and its result is a list of {item, ok, result, error}."
        ),
    )
    max_items: int = Field(
        default=10,
        ge=1,
        le=200,
        description=(
            "Most for_each elements looked up; the rest are recorded as `overflow` and make "
            "every score rule reading the step unevaluated, so alert content padded with "
            "entities cannot spend the budget or hide the one that matters."
        ),
    )
    needs: list[str] = Field(
        default_factory=list,
        description=(
            "Steps that must succeed before this one runs; it may read their results. "
            "Steps without a dependency between them run concurrently."
        ),
    )


class ScoreRule(_Strict):
    """Points added to the score when a condition on the evidence holds."""

    id: str = Field(
        pattern=_RULE_ID, max_length=64, description="Unique rule id, shown in the breakdown."
    )
    when: str = Field(description=f"Condition for the points. {_EXPRESSION_NOTE}")
    points: float = Field(
        ge=-100, le=100, description="Points added (negative to lower the score)."
    )
    reason: str = Field(
        min_length=1,
        description="Why the points were given, for analysts; may hold `${CEL}` templates.",
    )


class Scoring(_Strict):
    """How evidence turns into a 0-100 score: base plus the points of every rule that holds."""

    base: float = Field(default=0, ge=0, le=100, description="Starting score.")
    rules: list[ScoreRule] = Field(default_factory=list, description="Scoring rules.")


class TargetSpec(_Strict):
    """The entity an action is taken on."""

    type: str = Field(
        description=(
            "Entity type: host, user, ip, domain, url, file_hash, process, email, "
            "cloud_resource (or a `${...}` template yielding one)."
        )
    )
    value: str = Field(
        description="Entity value, usually a `${...}` template such as `${alert.hosts[0]}`."
    )


class RespondRule(_Strict):
    """A candidate action and the score thresholds at which it is executed, proposed or notified.

    The policy engine decides the final disposition; autonomy caps and
    guardrails (protected assets, blast radius, kill switch) always win.
    """

    id: str = Field(
        pattern=_RULE_ID, max_length=64, description="Unique rule id, named in decisions."
    )
    description: str | None = Field(default=None, description="What the action achieves.")
    action: str = Field(
        min_length=1, description="Action capability, e.g. `isolate_host`, `block_ip`, `notify`."
    )
    target: TargetSpec = Field(description="The entity the action is taken on.")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Extra action arguments; may hold `${CEL}` templates."
    )
    when: str | None = Field(
        default=None, description=f"Put the action forward only if this is true. {_EXPRESSION_NOTE}"
    )
    for_each: str | None = Field(
        default=None,
        description=(
            "CEL list expression; one candidate per element, `item` in scope for target/args."
        ),
    )
    execute_at: float | None = Field(
        default=None, ge=0, le=100, description="Score at or above which the action may execute."
    )
    propose_at: float | None = Field(
        default=None, ge=0, le=100, description="Score at or above which the action is proposed."
    )
    notify_at: float | None = Field(
        default=None, ge=0, le=100, description="Score at or above which analysts are notified."
    )
    autonomy: AutonomyLevel | None = Field(
        default=None,
        description=(
            "Autonomy cap for this action (1 operator ... 5 observer); "
            "the most restrictive applies."
        ),
    )
    revert_after: str | None = Field(
        default=None,
        pattern=_DURATION,
        description="Automatic revert after this long unless made permanent, e.g. `24h` (s/m/h/d).",
    )
    requires: list[str] = Field(
        default_factory=list,
        description="Steps whose evidence must be present (ok) before the action may be decided.",
    )

    @property
    def revert_after_seconds(self) -> int | None:
        return revert_after_seconds(self.revert_after)


class Playbook(_Strict):
    """A playbook: what it matches, how it investigates, how it scores and how it responds."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"$id": "https://soc-agent.dev/schemas/playbook.schema.json"},
    )

    name: str = Field(pattern=_NAME, max_length=64, description="Unique playbook name ([a-z0-9-]).")
    version: str = Field(
        default="1", max_length=32, description="Version of this playbook, recorded in decisions."
    )
    description: str = Field(default="", description="What the playbook handles.")
    priority: int = Field(
        default=100,
        ge=0,
        le=10000,
        description="When several playbooks match, the highest priority wins (ties: name order).",
    )
    investigator: Literal["steps", "agent", "hybrid"] = Field(
        default="steps",
        description="steps: the listed steps only; hybrid: the steps, then the model's own "
        "read-only lookups; agent: the model plans from the alert. Score rules of the last two "
        "may read its assessment as `agent` (verdict, confidence).",
    )
    autonomy: AutonomyLevel | None = Field(
        default=None, description="Autonomy cap for every action of this playbook (1-5)."
    )
    match: str = Field(
        description="CEL condition over `alert` and `incident`; the playbook applies when true."
    )
    budget: Budget = Field(default_factory=Budget, description="Investigation limits.")
    steps: list[Step] = Field(default_factory=list, description="Investigation steps.")
    score: Scoring = Field(default_factory=Scoring, description="Scoring of the evidence.")
    respond: list[RespondRule] = Field(
        default_factory=list, description="Candidate actions with their thresholds."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 2` in YAML is an int; it is still a version label.
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    # A pack's settings (pack.yaml `settings:`, values from `pack_settings:`), which its
    # steps, score and respond rules read as `settings`; empty outside a pack.
    _settings: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return self._settings

    def with_settings(self, values: dict[str, Any]) -> Playbook:
        copy = self.model_copy()
        copy._settings = dict(values)
        return copy

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def revert_after_seconds(value: str | None) -> int | None:
    """`24h` -> 86400; None stays None."""
    if value is None:
        return None
    return int(value[:-1]) * _DURATION_UNITS[value[-1]]


def export_json_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook file (draft 2020-12), for editors and CI."""
    schema = Playbook.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def json_schema_text() -> str:
    """The schema as committed in `playbooks/playbook.schema.json` (stable formatting)."""
    return json.dumps(export_json_schema(), indent=2) + "\n"
