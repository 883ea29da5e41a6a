"""`api:` settings: validated at start-up, errors name the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.models import RiskTier, Role
from soc_agent.settings import Settings, load_settings


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "soc.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def test_defaults_are_safe() -> None:
    api = load_settings().api
    assert api.approve_roles == {
        RiskTier.LOW: Role.ANALYST,
        RiskTier.MEDIUM: Role.ANALYST,
        RiskTier.HIGH: Role.SENIOR,
    }
    assert api.oidc is None and api.cookie_secure is None
    assert (api.kill_switch_on_role, api.kill_switch_off_role) == (Role.ANALYST, Role.SENIOR)


def test_yaml_overrides_keep_unnamed_tiers(tmp_path: Path) -> None:
    settings = _load(tmp_path, "api:\n  approve_roles: {high: admin}\n")
    assert settings.api.approve_roles[RiskTier.HIGH] is Role.ADMIN
    assert settings.api.approve_roles[RiskTier.LOW] is Role.ANALYST


@pytest.mark.parametrize(
    ("text", "key", "line", "message"),
    [
        ("api:\n  approve_roles: {low: viewer}\n", "api.approve_roles", 2, "viewer may never"),
        ("api:\n  approve_roles: {low: root}\n", "api.approve_roles.low", 2, "viewer"),
        ("api:\n  kill_switch_off_role: viewer\n", "api.kill_switch_off_role", 2, "kill switch"),
        ("api:\n  colour: blue\n", "api.colour", 2, "Extra inputs"),
        (
            "api:\n  oidc:\n    issuer: https://idp\n    audience: soc\n    algorithms: [HS256]\n",
            "api.oidc.algorithms",
            5,
            "asymmetric",
        ),
    ],
)
def test_bad_values_name_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert err.value.key == key
    assert err.value.line == line
    assert message in str(err.value)
