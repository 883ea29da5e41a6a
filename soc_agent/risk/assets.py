"""Asset criticality for risk rules (`entity.criticality`), from an inventory file.

The file is the local asset inventory's format (`assets: [{type, value, criticality,
...}]`, other keys ignored), read once at start-up by both runtimes, so a rule can
weigh an alert on a crown jewel without a lookup per alert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent.models import Entity, EntityType
from soc_agent.yaml_input import read_model

__all__ = ["load_asset_criticality"]


class _Asset(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: EntityType
    value: str = Field(min_length=1, max_length=2048)
    criticality: Literal["low", "medium", "high", "critical"] = "medium"


class _Assets(BaseModel):
    model_config = ConfigDict(extra="allow")

    assets: list[_Asset] = Field(default_factory=list, max_length=1_000_000)


def load_asset_criticality(path: Path) -> dict[str, str]:
    """Entity key (`host:dc01`) -> criticality; errors name file, line and field."""
    parsed, _ = read_model(path, _Assets, "asset file")
    return {Entity(type=a.type, value=a.value).key: a.criticality for a in parsed.assets}
