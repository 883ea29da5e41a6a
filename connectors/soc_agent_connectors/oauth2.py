"""Deprecated: import these names from `soc_agent_connectors`; this module goes in 0.3."""

from __future__ import annotations

import warnings

from soc_agent_connectors import MicrosoftOAuth2Config, OAuth2Config, OAuth2Connector

__all__ = ["MicrosoftOAuth2Config", "OAuth2Config", "OAuth2Connector"]

warnings.warn(
    "soc_agent_connectors.oauth2 is deprecated; import from soc_agent_connectors",
    DeprecationWarning,
    stacklevel=2,
)
