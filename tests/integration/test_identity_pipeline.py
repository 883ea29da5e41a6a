"""Identity resolution through the whole embedded pipeline: the inventory's aliases make a
Windows logon name and a UPN one person, one incident and one containment target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from soc_agent.errors import ConfigError
from soc_agent.models import EntityType
from soc_agent.runtime.components import open_components
from soc_agent.settings import Settings
from tests.integration.conftest import ALERTS, FIXTURES, Deployment

# The CrowdStrike credential-dumping alert names `l.martin` (domain ACME); this OCSF
# finding from the identity provider, ten minutes later, names only the UPN.
IDP_FINDING: dict[str, Any] = {
    "class_uid": 2004,
    "severity_id": 4,
    "time": 1795165200000,
    "metadata": {"version": "1.2.0", "product": {"name": "Okta", "vendor_name": "Okta"}},
    "finding_info": {"uid": "9a8b7c6d5e4f", "title": "Session token replayed from new ASN"},
    "actor": {"user": {"name": "l.martin@acme.example"}},
}


def _inventory(root: Path, *, aliases: bool) -> Path:
    """The fixture inventory, with l.martin's entry under the UPN and its aliases."""
    text = (FIXTURES / "inventory.yaml").read_text()
    if aliases:
        text = text.replace(
            "{type: user, value: l.martin,",
            "{type: user, value: l.martin@acme.example, "
            "aliases: {sam: l.martin, nt_account: 'acme\\l.martin'},",
        )
    path = root / "inventory.yaml"
    path.write_text(text)
    return path


def _settings(deployment: Deployment, *, identity: Path | None) -> Settings:
    base = deployment.settings("account-credential-theft")
    inventory = _inventory(deployment.root, aliases=identity is not None)
    connectors = {**base.connectors, "asset_inventory": {"path": str(inventory)}}
    return base.model_copy(
        update={
            "data_dirs": [*base.data_dirs, deployment.root],
            "connectors": connectors,
            "correlation": base.correlation.model_copy(update={"identity_file": identity}),
        }
    )


def _alerts(deployment: Deployment) -> Path:
    folder = deployment.root / "alerts"
    folder.mkdir()
    shutil.copy(ALERTS / "crowdstrike_ws-hr-013_credential_dumping.json", folder / "1.json")
    (folder / "2.json").write_text(json.dumps(IDP_FINDING))
    return folder


async def test_inventory_aliases_make_two_names_one_incident_and_one_target(
    deployment: Deployment,
) -> None:
    identity = _inventory(deployment.root, aliases=True)
    settings = _settings(deployment, identity=identity)
    folder = _alerts(deployment)
    async with deployment.open(settings) as components:
        outcomes = await deployment.feed(components, str(folder / "1.json"), str(folder / "2.json"))
    first, second = outcomes
    assert second.incident.id == first.incident.id
    assert second.correlation == "grouped"
    [user] = [e for e in second.incident.entities if e.type is EntityType.USER]
    assert user.value == "l.martin@acme.example"  # the inventory's name wins
    assert user.aliases["sam"] == "l.martin"
    # The account is known to the inventory under its canonical name: contained at once.
    assert ("disable_user", "l.martin@acme.example") in deployment.journal_actions()


async def test_without_the_identity_file_the_two_names_stay_apart(
    deployment: Deployment,
) -> None:
    settings = _settings(deployment, identity=None)
    folder = _alerts(deployment)
    async with deployment.open(settings) as components:
        outcomes = await deployment.feed(components, str(folder / "1.json"), str(folder / "2.json"))
    assert outcomes[0].incident.id != outcomes[1].incident.id


async def test_a_name_given_to_two_entries_stops_start_up_naming_file_and_line(
    deployment: Deployment,
) -> None:
    identity = deployment.root / "identities.yaml"
    identity.write_text(
        "assets:\n"
        "  - {type: user, value: a.one@acme.example, aliases: {sam: shared}}\n"
        "  - {type: user, value: a.two@acme.example, aliases: {sam: shared}}\n"
    )
    settings = _settings(deployment, identity=identity)
    with pytest.raises(ConfigError) as caught:
        async with open_components(settings, clock=deployment.clock):
            pass
    message = str(caught.value)
    assert f"{identity}:3: assets.1.aliases:" in message
    assert "user:shared names two entries" in message
