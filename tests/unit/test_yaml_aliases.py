"""A YAML alias bomb in a playbook, a mapping or the config file fails fast, naming the line.

Ten nested aliases of ten make 10^10 nodes: PyYAML would expand them while
constructing, hanging validation and every command that loads the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from soc_agent.errors import ConfigError, PlaybookError
from soc_agent.ingest import load_mappings
from soc_agent.playbooks import load_playbooks
from soc_agent.settings import load_settings

BOMB = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    + ["boom: *a9"]
)


def test_a_playbook_with_aliases_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text("name: bomb\n" + BOMB + "\n")
    started = time.monotonic()
    with pytest.raises(PlaybookError) as caught:
        load_playbooks(tmp_path)
    assert time.monotonic() - started < 5
    assert "aliases" in str(caught.value) and "bomb.yaml:3" in str(caught.value)


def test_a_mapping_with_aliases_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wazuh.yaml").write_text(BOMB + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="aliases") as caught:
        load_mappings([tmp_path / "wazuh.yaml"])
    assert time.monotonic() - started < 5
    assert caught.value.line == 2


def test_the_config_file_with_aliases_is_refused(tmp_path: Path) -> None:
    (tmp_path / "soc-agent.yaml").write_text("agent_id: x\n" + BOMB + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="aliases") as caught:
        load_settings(tmp_path / "soc-agent.yaml")
    assert time.monotonic() - started < 5
    assert caught.value.line == 3


def test_anchors_without_aliases_still_load(tmp_path: Path) -> None:
    (tmp_path / "soc-agent.yaml").write_text("agent_id: &id soc-agent-eu\n")
    assert load_settings(tmp_path / "soc-agent.yaml").agent_id == "soc-agent-eu"
