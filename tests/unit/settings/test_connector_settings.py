"""`connectors:` and `grants:` add to the defaults; only `enabled: false` turns one off."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.runtime.components import build_connectors
from soc_agent.runtime.control import active_connectors
from soc_agent.settings import DEFAULT_GRANTS, load_settings


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soc-agent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_new_connector_joins_the_defaults_with_their_grants(tmp_path: Path) -> None:
    settings = load_settings(
        _config(
            tmp_path,
            "connectors:\n  partner_intel: {use: threat_intel}\n"
            "grants:\n  partner_intel: [intel:read]\n",
        ),
        store=tmp_path / "s.db",
    )
    assert set(settings.connectors) == {*DEFAULT_GRANTS, "partner_intel"}
    assert settings.grants == {**DEFAULT_GRANTS, "partner_intel": ["intel:read"]}
    assert set(build_connectors(settings)) == {*DEFAULT_GRANTS, "partner_intel"}


def test_naming_a_default_connectors_grants_narrows_only_those(tmp_path: Path) -> None:
    settings = load_settings(
        _config(tmp_path, "grants:\n  containment: [host:contain]\n"), store=tmp_path / "s.db"
    )
    assert settings.grants["containment"] == ["host:contain"]
    assert settings.grants["threat_intel"] == ["intel:read"]


def test_options_for_a_default_connector_keep_it_on(tmp_path: Path) -> None:
    intel = tmp_path / "intel.yaml"
    intel.write_text("indicators: []\n", encoding="utf-8")
    settings = load_settings(
        _config(tmp_path, f"connectors:\n  threat_intel: {{path: {intel}}}\n"),
        store=tmp_path / "s.db",
    )
    assert settings.connectors["threat_intel"] == {"path": str(intel)}
    assert settings.grants["threat_intel"] == ["intel:read"]


def test_the_environment_turns_a_default_connector_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOC_AGENT_CONNECTORS__CONTAINMENT__ENABLED", "false")
    settings = load_settings(store=tmp_path / "s.db")
    assert "containment" not in settings.connectors
    assert "containment" not in settings.grants
    assert settings.disabled_connectors() == ["containment"]
    assert "connector containment: off (connectors.containment.enabled: false)" in (
        active_connectors(settings)
    )


def test_enabled_must_be_a_boolean_and_the_error_names_file_line_and_key(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, "store: s.db\nconnectors:\n  containment:\n    enabled: sometimes\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}:4" in message and "connectors.containment" in message
    assert "enabled must be true or false, not 'sometimes'" in message


def test_grants_for_a_connector_turned_off_are_an_error(tmp_path: Path) -> None:
    settings = load_settings(
        _config(
            tmp_path,
            "connectors:\n  containment: {enabled: false}\n"
            "grants:\n  containment: [host:contain]\n",
        ),
        store=tmp_path / "s.db",
    )
    with pytest.raises(ConfigError, match="grants name a connector that is not configured"):
        build_connectors(settings)


def test_a_real_edr_beside_the_recording_containment_must_choose(tmp_path: Path) -> None:
    edr = (
        "connectors:\n  crowdstrike: {client_id: env:FALCON_ID, client_secret: env:FALCON_SECRET}\n"
        "grants:\n  crowdstrike: [edr:read, host:contain]\n"
    )
    both = load_settings(_config(tmp_path, edr), store=tmp_path / "s.db")
    with pytest.raises(ConfigError) as caught:
        build_connectors(both)
    assert "'isolate_host' is granted on containment and crowdstrike" in str(caught.value)
    assert "connectors.containment.enabled: false" in str(caught.value)

    chosen = load_settings(
        _config(tmp_path, edr + "  containment: [user:disable]\n"), store=tmp_path / "s.db"
    )
    assert {"crowdstrike", "containment"} <= set(build_connectors(chosen))
