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
