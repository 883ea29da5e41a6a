"""Deprecated: import these names from `soc_agent_connectors`; this module goes in 0.3."""

from __future__ import annotations

import warnings

from soc_agent_connectors import (
    CircuitOpenError,
    EgressDeniedError,
    HttpConnector,
    HttpConnectorConfig,
    HttpRuntime,
    VendorHTTPError,
)

__all__ = [
    "CircuitOpenError",
    "EgressDeniedError",
    "HttpConnector",
    "HttpConnectorConfig",
    "HttpRuntime",
    "VendorHTTPError",
]

warnings.warn(
    "soc_agent_connectors.http is deprecated; import from soc_agent_connectors",
    DeprecationWarning,
    stacklevel=2,
)
