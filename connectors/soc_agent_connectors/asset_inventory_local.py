"""Offline asset inventory: hosts, users and other assets with criticality and owners."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent_connectors import Connector, capability
from soc_agent_connectors._local_data import DATA_PATH, load_records, resolve_data_path

__all__ = ["LocalAssetInventory"]

Criticality = Literal["low", "medium", "high", "critical"]


class LocalAssetInventoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        default=None, description="YAML file of assets", json_schema_extra=DATA_PATH
    )


AssetType = Literal["host", "user", "ip", "domain", "email", "cloud_resource"]


class AssetEntry(BaseModel):
    """One asset in the file; keys beyond these come back as `attributes`. Checked at
    start-up, so a bad entry never fails a lookup."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)
    type: AssetType
    value: str = Field(min_length=1)
    criticality: Criticality = "medium"
    owner: str | None = None
    protected: bool = False
    tags: list[str] = Field(default_factory=list)
    dependents: int = Field(default=0, ge=0)


class AssetInput(BaseModel):
    type: AssetType
    value: str = Field(min_length=1, max_length=2048)


class AssetOutput(BaseModel):
    type: str
    value: str
    found: bool
    criticality: Criticality = "medium"
    owner: str | None = None
    protected: bool = False
    tags: list[str] = Field(default_factory=list)
    dependents: int = Field(default=0, description="users or services that depend on it")
    attributes: dict[str, Any] = Field(default_factory=dict)


class LocalAssetInventory(Connector):
    """Assets from a YAML file: `assets: [{type, value, criticality, owner, protected, ...}]`.

    Unknown assets come back `found: false` with medium criticality, so the
    policy never mistakes "not in the inventory" for "unimportant".
    """

    name = "asset_inventory"
    description = "Local asset inventory (criticality, owners, protected flag)"
    config_model = LocalAssetInventoryConfig

    def __init__(self, config: LocalAssetInventoryConfig) -> None:
        super().__init__(config)
        path = resolve_data_path(config.path, "inventory.yaml")
        items = load_records(path, "assets", connector=self.name, entry=AssetEntry)
        self._assets = {(item.type, item.value.strip().lower()): item for item in items}

    @capability(kind="query", scopes=["assets:read"])
    async def lookup_asset(self, args: AssetInput) -> AssetOutput:
        """Criticality, owner and protection of one asset."""
        item = self._assets.get((args.type, args.value.strip().lower()))
        if item is None:
            return AssetOutput(type=args.type, value=args.value, found=False)
        return AssetOutput(
            type=args.type,
            value=args.value,
            found=True,
            criticality=item.criticality,
            owner=item.owner,
            protected=item.protected,
            tags=list(item.tags),
            dependents=item.dependents,
            attributes=dict(item.model_extra or {}),
        )
