"""A malformed local data file stops start-up with the file named, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.runtime.components import build_connectors
from soc_agent.settings import load_settings

BAD_INTEL = {
    "not a mapping": "- indicator: 1.2.3.4\n  type: ip\n",
    "indicators not a list": "indicators: 5\n",
    "bad network": "indicators:\n  - {indicator: 10.0.0.0/99, type: ip, verdict: malicious}\n",
    "bad YAML": "indicators:\n  - {indicator: [unclosed\n",
    "not UTF-8": b"indicators:\n  - {indicator: \xff\xfe, type: ip}\n",
}


@pytest.mark.parametrize("content", BAD_INTEL.values(), ids=BAD_INTEL.keys())
def test_a_malformed_intel_file_is_named(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "intel.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    settings = load_settings(
        store=tmp_path / "s.db",
        connectors={"threat_intel": {"path": str(path)}, "notifier": {}},
        grants={"threat_intel": ["intel:read"], "notifier": ["notify:send"]},
    )
    with pytest.raises(ConfigError) as err:
        build_connectors(settings)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content",
    ["- just a list\n", "assets: {a: 1}\n", "assets:\n  - 42\n", "assets: [\n"],
    ids=["not a mapping", "assets not a list", "asset not a mapping", "bad YAML"],
)
def test_a_malformed_asset_file_is_named(tmp_path: Path, content: str) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text(content)
    settings = load_settings(
        store=tmp_path / "s.db",
        connectors={"asset_inventory": {"path": str(path)}},
        grants={"asset_inventory": ["assets:read"]},
    )
    with pytest.raises(ConfigError) as err:
        build_connectors(settings)
    assert str(path) in str(err.value)


def _build(tmp_path: Path, connector: str, path: Path) -> ConfigError:
    scopes = {"threat_intel": ["intel:read"], "asset_inventory": ["assets:read"]}
    scopes["event_store"] = ["siem:read"]
    settings = load_settings(
        store=tmp_path / "s.db",
        connectors={connector: {"path": str(path)}},
        grants={connector: scopes[connector]},
    )
    with pytest.raises(ConfigError) as err:
        build_connectors(settings)
    return err.value


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "intel.yaml"
    path.write_text("indicators:\n  - {indicator: 1.2.3.4, type: ip}\n  - {indicator: [unclosed\n")
    err = _build(tmp_path, "threat_intel", path)
    assert (err.source, err.line) == (str(path), 4)
    assert str(err).startswith(f"{path}:4: invalid YAML: ")
    assert "line 4, column" not in str(err)  # said once, in the prefix


# Entries that loaded and then failed at the first lookup, mid-investigation, or quietly
# never matched (a type the connector does not know).
BAD_INTEL_ENTRIES = {
    "unknown verdict": ("{indicator: 1.2.3.4, type: ip, verdict: evil}", "verdict"),
    "score not a number": ("{indicator: 1.2.3.4, type: ip, score: high}", "score"),
    "score out of range": ("{indicator: 1.2.3.4, type: ip, score: 150}", "score"),
    "sources not a list": ("{indicator: 1.2.3.4, type: ip, sources: 5}", "sources"),
    "tags a string": ("{indicator: 1.2.3.4, type: ip, tags: loader}", "tags"),
    "unknown type": ("{indicator: 1.2.3.4, type: ipv4}", "type"),
}


@pytest.mark.parametrize(
    ("entry", "field"), BAD_INTEL_ENTRIES.values(), ids=BAD_INTEL_ENTRIES.keys()
)
def test_an_intel_entry_of_the_wrong_shape_is_named_at_start_up(
    tmp_path: Path, entry: str, field: str
) -> None:
    path = tmp_path / "intel.yaml"
    path.write_text(f"indicators:\n  - {{indicator: 5.6.7.8, type: ip}}\n  - {entry}\n")
    err = _build(tmp_path, "threat_intel", path)
    assert (err.source, err.key, err.line) == (str(path), f"indicators[1].{field}", 3)


BAD_ASSET_ENTRIES = {
    "unknown criticality": ("{type: host, value: dc01, criticality: vital}", "criticality"),
    "dependents not a number": ("{type: host, value: dc01, dependents: many}", "dependents"),
    "protected not a flag": ("{type: host, value: dc01, protected: perhaps}", "protected"),
    "tags a string": ("{type: host, value: dc01, tags: tier0}", "tags"),
    "unknown type": ("{type: server, value: dc01}", "type"),
}


@pytest.mark.parametrize(
    ("entry", "field"), BAD_ASSET_ENTRIES.values(), ids=BAD_ASSET_ENTRIES.keys()
)
def test_an_asset_entry_of_the_wrong_shape_is_named_at_start_up(
    tmp_path: Path, entry: str, field: str
) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text(f"# inventory\nassets:\n  - {entry}\n")
    err = _build(tmp_path, "asset_inventory", path)
    assert (err.source, err.key, err.line) == (str(path), f"assets[0].{field}", 3)


def test_an_event_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event": "\xff"}\n')
    assert "not UTF-8" in str(_build(tmp_path, "event_store", path))
    path.unlink()
    path.mkdir()
    err = _build(tmp_path, "event_store", path)
    assert err.source == str(path)
    assert "cannot read the data file" in str(err)
