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


class AssetInput(BaseModel):
    type: Literal["host", "user", "ip", "domain", "email", "cloud_resource"]
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
        items = load_records(path, "assets", connector=self.name, needs=("type", "value"))
        self._assets: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            self._assets[(str(item["type"]), str(item["value"]).strip().lower())] = item

    @capability(kind="query", scopes=["assets:read"])
    async def lookup_asset(self, args: AssetInput) -> AssetOutput:
        """Criticality, owner and protection of one asset."""
        item = self._assets.get((args.type, args.value.strip().lower()))
        if item is None:
            return AssetOutput(type=args.type, value=args.value, found=False)
        known = {"type", "value", "criticality", "owner", "protected", "tags", "dependents"}
        return AssetOutput(
            type=args.type,
            value=args.value,
            found=True,
            criticality=item.get("criticality", "medium"),
            owner=item.get("owner"),
            protected=bool(item.get("protected", False)),
            tags=list(item.get("tags", [])),
            dependents=int(item.get("dependents", 0)),
            attributes={k: v for k, v in item.items() if k not in known},
        )
