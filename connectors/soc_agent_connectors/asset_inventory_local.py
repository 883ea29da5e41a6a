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
    aliases: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description="other names of the same asset by kind (upn, sam, fqdn, ...)",
    )


class AssetInput(BaseModel):
    type: AssetType
    value: str = Field(min_length=1, max_length=2048)
    aliases: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="the target's other names: any of them may be the one the inventory knows",
    )


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
        for item in items:
            for name in item.aliases.values():
                # Values are indexed first: an alias never shadows another entry's value.
                self._assets.setdefault((item.type, name.strip().lower()), item)

    @capability(kind="query", scopes=["assets:read"])
    async def lookup_asset(self, args: AssetInput) -> AssetOutput:
        """Criticality, owner and protection of one asset, found by any of its names."""
        names = (args.value, *args.aliases)
        item = next(
            (
                found
                for name in names
                if (found := self._assets.get((args.type, name.strip().lower()))) is not None
            ),
            None,
        )
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
            attributes={
                **(item.model_extra or {}),
                **({"aliases": item.aliases} if item.aliases else {}),
            },
        )
