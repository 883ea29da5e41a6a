"""Files named in connector settings stay in the directories configured for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import SecretUnavailableError

from soc_agent.errors import ConfigError
from soc_agent.runtime.components import build_connectors, open_components
from soc_agent.settings import DEFAULT_GRANTS, load_settings


def _settings(tmp: Path, connectors: dict[str, Any], **extra: Any) -> Any:
    store = tmp / "state" / "s.db"
    store.parent.mkdir(exist_ok=True)
    grants = {"threat_intel": ["intel:read"], "case_hook": ["notify:send"], "notifier": []}
    return load_settings(
        store=store,
        connectors=connectors,
        # The default connectors are always there; the notifier's grant is withdrawn so
        # that the case hook alone sends notifications.
        grants={k: v for k, v in grants.items() if k in connectors or k in DEFAULT_GRANTS},
        **extra,
    )


def _hook(secret: str) -> dict[str, Any]:
    return {
        "use": "webhook",
        "base_url": "https://cases.example.com/hooks",
        "credentials": "env:CASE_TOKEN",
        "signing_secret": secret,
    }


def test_a_file_secret_outside_the_secret_directories_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_connectors(_settings(tmp_path, {"case_hook": _hook("file:/etc/passwd")}))
    assert err.value.key == "connectors.case_hook.signing_secret"
    assert "file:/etc/passwd is outside the secret directories" in str(err.value)


def test_a_symlink_out_of_a_secret_directory_is_followed_and_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hook").symlink_to("/etc/passwd")
    with pytest.raises(ConfigError, match="outside the secret directories"):
        build_connectors(
            _settings(
                tmp_path, {"case_hook": _hook(f"file:{secrets / 'hook'}")}, secret_dirs=[secrets]
            )
        )
    (secrets / "real").write_text("a-signing-secret-of-some-length")
    built = build_connectors(
        _settings(tmp_path, {"case_hook": _hook(f"file:{secrets / 'real'}")}, secret_dirs=[secrets])
    )
    assert "case_hook" in built


@pytest.mark.parametrize(
    ("connector", "key", "where"),
    [
        ("threat_intel", "path", "../../../../etc/hosts"),
        ("notifier", "outbox", "/etc/soc-agent-outbox.jsonl"),
    ],
)
def test_a_data_file_outside_the_data_directories_is_refused(
    tmp_path: Path, connector: str, key: str, where: str
) -> None:
    with pytest.raises(ConfigError) as err:
        build_connectors(_settings(tmp_path, {connector: {key: where}}))
    assert err.value.key == f"connectors.{connector}.{key}"
    assert "outside the data directories" in str(err.value)


def test_data_files_beside_the_store_or_in_data_dirs_are_fine(tmp_path: Path) -> None:
    intel = tmp_path / "feeds" / "intel.yaml"
    intel.parent.mkdir()
    intel.write_text("indicators: []\n")
    with pytest.raises(ConfigError, match="outside the data directories"):
        build_connectors(_settings(tmp_path, {"threat_intel": {"path": str(intel)}}))
    built = build_connectors(
        _settings(tmp_path, {"threat_intel": {"path": str(intel)}}, data_dirs=[intel.parent])
    )
    assert "threat_intel" in built
    # the defaults: the shipped samples, and the journal and outbox beside the store
    assert len(build_connectors(_settings(tmp_path, {"notifier": {}}))) == len(DEFAULT_GRANTS)
    assert len(build_connectors(load_settings(store=tmp_path / "s.db"))) >= 5


def test_files_beside_the_config_file_are_fine(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "intel.yaml").write_text("indicators: []\n")
    (etc / "hook.secret").write_text("a-signing-secret-of-some-length")
    config = etc / "soc-agent.yaml"
    config.write_text(
        "connectors:\n"
        f"  threat_intel: {{path: {etc / 'intel.yaml'}}}\n"
        f"  case_hook: {{use: webhook, base_url: 'https://cases.example.com/h',"
        f" credentials: 'env:CASE_TOKEN', signing_secret: 'file:{etc / 'hook.secret'}'}}\n"
        "  notifier: {enabled: false}\n"
        "grants: {threat_intel: [intel:read], case_hook: [notify:send]}\n"
    )
    settings = load_settings(config, store=tmp_path / "var" / "s.db")
    assert settings.config == config
    assert set(build_connectors(settings)) == {*DEFAULT_GRANTS, "case_hook"} - {"notifier"}


def test_a_file_secret_swapped_for_a_symlink_out_after_start_up_is_not_read(
    tmp_path: Path,
) -> None:
    secrets, outside = tmp_path / "secrets", tmp_path / "elsewhere"
    secrets.mkdir()
    outside.mkdir()
    (secrets / "hook").write_text("a-signing-secret-of-some-length")
    (outside / "shadow").write_text("root:$6$not-for-a-vendor")
    built = build_connectors(
        _settings(tmp_path, {"case_hook": _hook(f"file:{secrets / 'hook'}")}, secret_dirs=[secrets])
    )
    ref = built["case_hook"].config.signing_secret
    assert ref.get() == "a-signing-secret-of-some-length"
    # start-up checked the path once; the file is re-read whenever it changes
    (secrets / "hook").unlink()
    (secrets / "hook").symlink_to(outside / "shadow")
    with pytest.raises(SecretUnavailableError) as err:
        ref.get()
    assert "outside the secret directories" in str(err.value)
    assert "not-for-a-vendor" not in str(err.value)


async def test_a_file_secret_in_the_agents_own_settings_is_confined(tmp_path: Path) -> None:
    settings = load_settings(
        store=tmp_path / "s.db", llm={"model": "local", "api_key": "file:/etc/passwd"}
    )
    with pytest.raises(ConfigError) as err:
        async with open_components(settings):
            pass
    assert err.value.key == "llm.api_key"
    assert "outside the secret directories" in str(err.value)
