"""The `risk:` settings: windows, threshold and bounds of entity risk."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from soc_agent_connectors import DATA_PATH

from soc_agent.models import EntityType
from soc_agent.risk.rules import DEFAULT_ENTITY_TYPES

__all__ = ["RiskConfig"]


class RiskConfig(BaseModel):
    """Risk accumulates per entity in hopping windows: `window_seconds` long, one starting
    every `hop_seconds`; an entity whose total in one window reaches `threshold` gets a
    risk alert (format `soc_risk`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="accumulate risk and raise risk alerts")
    threshold: int = Field(default=100, ge=1, le=1_000_000, description="risk that raises an alert")
    window_seconds: int = Field(default=86_400, ge=60, le=90 * 86_400)
    hop_seconds: int = Field(default=3_600, ge=60, le=90 * 86_400)
    entity_types: list[EntityType] = Field(
        default_factory=lambda: list(DEFAULT_ENTITY_TYPES),
        min_length=1,
        description="the entity types that gather risk",
    )
    max_contributions: int = Field(
        default=1_000,
        ge=10,
        le=100_000,
        description="alerts kept per entity and window (each once, by id); later ones are "
        "counted as dropped",
    )
    shipped_rules: bool = Field(default=True, description="load the shipped risk rules")
    asset_file: Path | None = Field(
        default=None,
        description="assets with their criticality (the local inventory's YAML format), read "
        "at start-up: rules see it as entity.criticality (unknown without one)",
        json_schema_extra=DATA_PATH,
    )

    @model_validator(mode="after")
    def _hops_divide_the_window(self) -> RiskConfig:
        if self.window_seconds % self.hop_seconds:
            raise ValueError("hop_seconds must divide window_seconds")
        if self.window_seconds // self.hop_seconds > 168:
            raise ValueError("at most 168 windows may overlap (window_seconds / hop_seconds)")
        return self
