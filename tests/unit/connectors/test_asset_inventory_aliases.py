"""The local inventory finds an asset by any of its names, and an alias never hides a value."""

from __future__ import annotations

from pathlib import Path

from soc_agent_connectors.asset_inventory_local import (
    LocalAssetInventory,
    LocalAssetInventoryConfig,
)

INVENTORY = """
assets:
  - {type: user, value: m.chen@acme.example, criticality: critical, protected: true,
     aliases: {sam: m.chen, object_id: 87d349ed-44d7-43e1-9a83-5f2406dee5bd}}
  - {type: user, value: jdoe, criticality: low, aliases: {upn: m.chen}}
  - {type: user, value: m.chen, criticality: low}
"""


def _inventory(tmp_path: Path) -> LocalAssetInventory:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return LocalAssetInventory(LocalAssetInventoryConfig(path=str(path)))


async def test_an_asset_is_found_by_an_alias_the_query_brings(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    found = await inventory.invoke(
        "lookup_asset",
        {"type": "user", "value": "nobody-knows-this", "aliases": ["M.Chen@acme.example"]},
    )
    assert (found["found"], found["criticality"], found["protected"]) == (True, "critical", True)
    assert found["attributes"]["aliases"]["sam"] == "m.chen"


async def test_an_asset_is_found_by_its_own_alias(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    by_object_id = await inventory.invoke(
        "lookup_asset", {"type": "user", "value": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"}
    )
    assert by_object_id["criticality"] == "critical"


async def test_a_value_wins_over_another_entrys_alias(tmp_path: Path) -> None:
    # `m.chen` is both an entry's value (low) and aliases of two others: the value wins,
    # so declaring an alias can never change what an existing entry answers.
    inventory = _inventory(tmp_path)
    plain = await inventory.invoke("lookup_asset", {"type": "user", "value": "m.chen"})
    assert plain["criticality"] == "low"
    assert "aliases" not in plain["attributes"]
