"""Pack manifests and enabling packs: errors name the file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.settings import load_settings
from soc_agent.settings.packs import load_pack

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "samples" / "packs" / "data_exfiltration"
IDENTITY = ROOT / "packs" / "soc_agent_packs" / "identity"
CASE_API = "connectors:\n  case_api: {base_url: 'https://cases.acme.example/api/v1'}\n"


def _copy(tmp_path: Path, name: str = "pack") -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / name))


def test_a_bad_manifest_names_file_line_and_field(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: one"))
    with pytest.raises(ConfigError) as caught:
        load_pack(pack)
    assert caught.value.source == str(manifest) and caught.value.key == "version"
    assert caught.value.line == 5


def test_a_directory_without_a_manifest_is_not_a_pack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not a pack: no pack\.yaml"):
        load_pack(tmp_path)


def test_enabling_a_pack_adds_its_folders(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(CASE_API + "packs: [pack]\n")  # relative to the config file
    settings = load_settings(config, store=tmp_path / "s.db")
    assert settings.playbooks == [IDENTITY / "playbooks", pack / "playbooks"]
    assert settings.mappings == [pack / "mappings"]
    assert settings.connector_definitions == [pack / "connectors"]


def test_two_packs_of_one_name_are_an_error(tmp_path: Path) -> None:
    first, second = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    config = tmp_path / "c.yaml"
    config.write_text(CASE_API + f"packs: [{first}, {second}]\n")
    with pytest.raises(ConfigError, match="two packs are named 'data-exfiltration'"):
        load_settings(config, store=tmp_path / "s.db")


def test_the_shipped_identity_pack_is_enabled_with_the_shipped_playbooks(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("pack_settings:\n  identity: {mfa_storm_prompts: 8}\n")
    settings = load_settings(config, store=tmp_path / "s.db")
    assert settings.playbooks == [IDENTITY / "playbooks"]
    values = settings.playbook_settings[str(IDENTITY / "playbooks")]
    assert values == {"mfa_storm_prompts": 8, "brute_force_burst": 20}

    # Naming it again is harmless; with the shipped playbooks off it is enabled only by name.
    config.write_text("packs: [identity]\n")
    assert load_settings(config, store=tmp_path / "s.db").playbooks == [IDENTITY / "playbooks"]
    config.write_text("shipped_playbooks: false\n")
    assert load_settings(config, store=tmp_path / "s.db").playbooks == []
    config.write_text("shipped_playbooks: false\npacks: [identity]\n")
    assert load_settings(config, store=tmp_path / "s.db").playbooks == [IDENTITY / "playbooks"]


def test_a_pack_whose_python_connectors_are_not_installed_is_an_error(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text() + "provides:\n  connectors: [okta, case_db]\n")
    config = tmp_path / "c.yaml"
    config.write_text(CASE_API + "packs: [pack]\n")
    with pytest.raises(ConfigError, match=r"registers under soc_agent\.connectors: case_db"):
        load_settings(config, store=tmp_path / "s.db")


def test_a_packs_missing_connectors_stop_start_up_unless_escalating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from soc_agent.runtime.playbook_set import load_all_playbooks

    _copy(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("packs: [pack]\n")
    with pytest.raises(ConfigError) as caught:
        load_all_playbooks(load_settings(config, store=tmp_path / "s.db"))
    assert "pack 'data-exfiltration' needs connectors that are not configured: case_api" in str(
        caught.value
    )
    assert "data-exfiltration.yaml" in str(caught.value)  # and where its playbook names it
    config.write_text("packs: [pack]\nmissing_connectors: escalate\n")
    load_all_playbooks(load_settings(config, store=tmp_path / "s.db"))
    assert "needs connectors that are not configured: case_api" in caplog.text


def test_an_unknown_pack_lists_the_installed_ones(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("packs: [no-such-pack]\n")
    with pytest.raises(ConfigError, match=r"installed: data-exfiltration, identity\)"):
        load_settings(config, store=tmp_path / "s.db")


def test_pack_settings_are_checked_against_the_packs_schema(tmp_path: Path) -> None:
    _copy(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(CASE_API + "packs: [pack]\npack_settings:\n  data-exfiltration: {big: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, store=tmp_path / "s.db")
    assert caught.value.key == "pack_settings.data-exfiltration.big"
    assert caught.value.source == str(config)
    assert "the pack declares: large_bytes, personal_services" in str(caught.value)

    config.write_text(
        CASE_API + "packs: [pack]\npack_settings:\n  data-exfiltration: {large_bytes: lots}\n"
    )
    with pytest.raises(ConfigError, match="valid integer"):
        load_settings(config, store=tmp_path / "s.db")


def test_settings_for_a_pack_not_enabled_are_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("pack_settings:\n  data-exfiltration: {large_bytes: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, store=tmp_path / "s.db")
    assert caught.value.key == "pack_settings.data-exfiltration"
    assert "settings for a pack that is not enabled" in str(caught.value)


def test_enabling_one_more_pack_keeps_the_others_and_their_settings(tmp_path: Path) -> None:
    from soc_agent.settings.agent import with_packs

    first, second = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    manifest = second / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("name: data-exfiltration", "name: other"))
    config = tmp_path / "c.yaml"
    config.write_text(
        CASE_API + "packs: [a]\npack_settings:\n  data-exfiltration: {large_bytes: 7}\n"
    )
    settings = load_settings(config, store=tmp_path / "s.db")
    both = with_packs(settings.model_copy(update={"packs": [*settings.packs, str(second)]}))
    assert both.playbooks == [IDENTITY / "playbooks", first / "playbooks", second / "playbooks"]
    assert both.playbook_settings[str(first / "playbooks")]["large_bytes"] == 7
    assert both.playbook_settings[str(second / "playbooks")]["large_bytes"] == 100_000_000


def test_a_packs_risk_rules_join_the_configured_ones(tmp_path: Path) -> None:
    from soc_agent.risk import load_risk_rules
    from soc_agent.runtime.risk import risk_rule_sources

    pack = _copy(tmp_path)
    (pack / "risk_rules").mkdir()
    (pack / "risk_rules" / "dlp.yaml").write_text(
        "rules:\n  - {id: big-upload, description: a large upload, "
        "when: 'alert.labels.bytes != \"\"', points: 30, entities: [user]}\n",
        encoding="utf-8",
    )
    config = tmp_path / "c.yaml"
    config.write_text(CASE_API + "packs: [pack]\n")
    settings = load_settings(config, store=tmp_path / "s.db")
    assert settings.risk_rules == [pack / "risk_rules"]
    ids = [rule.id for rule in load_risk_rules(risk_rule_sources(settings)).rules]
    assert ids[-1] == "big-upload" and "severity" in ids  # beside the shipped rules
    from soc_agent.runtime.pack_tools import describe_pack
    from soc_agent.settings.packs import load_pack

    assert describe_pack(load_pack(pack))["risk_rules"] == ["big-upload"]
