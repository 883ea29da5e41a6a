"""The connector kit's one face, and the deprecated module paths kept for one release."""

from __future__ import annotations

import importlib
import sys

import pytest
import soc_agent_connectors

from soc_agent.audit.base import AuditSink
from soc_agent.gateway import Gateway


def test_every_public_name_resolves() -> None:
    missing = [n for n in soc_agent_connectors.__all__ if not hasattr(soc_agent_connectors, n)]
    assert missing == []


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("soc_agent_connectors.http", ["HttpConnector", "HttpConnectorConfig", "VendorHTTPError"]),
        ("soc_agent_connectors.oauth2", ["OAuth2Connector", "MicrosoftOAuth2Config"]),
    ],
)
def test_old_kit_paths_warn_and_re_export_the_same_objects(old: str, names: list[str]) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="import from soc_agent_connectors"):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(soc_agent_connectors, name)


def test_the_old_gateway_path_points_at_the_core() -> None:
    sys.modules.pop("soc_agent_connectors.gateway", None)
    with pytest.warns(DeprecationWarning, match="use soc_agent.gateway"):
        module = importlib.import_module("soc_agent_connectors.gateway")
    assert module.Gateway is Gateway
    assert module.AuditSink is AuditSink
