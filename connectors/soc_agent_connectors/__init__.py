"""The connector kit: everything a connector author may use, from one import.

A connector is one class: subclass `Connector` (or `HttpConnector`,
`OAuth2Connector`, `ResetHeaderConnector` for HTTP APIs), declare its config
model and its `@capability` methods with typed input and output models, and
register it under the `soc_agent.connectors` entry point. Connectors depend on
this kit, `soc_agent.models` and `soc_agent.errors` only; the agent enforces
grants, timeouts and audit around every call (`soc_agent.gateway`).

Modules whose names start with `_` are the kit's machinery (retries, circuit
breaker, rate limits, egress guard, token handling) and may change without
notice. The shipped connectors live beside this file, one module each.
"""

from __future__ import annotations

from soc_agent.errors import ConfigError, ConnectorError, EgressDeniedError
from soc_agent_connectors._http import CircuitOpenError, HttpConnector, VendorHTTPError
from soc_agent_connectors._http_config import HttpConnectorConfig, HttpRuntime
from soc_agent_connectors._http_guard import configured_host_problem
from soc_agent_connectors._local_data import DATA_PATH
from soc_agent_connectors._oauth2 import MicrosoftOAuth2Config, OAuth2Config, OAuth2Connector
from soc_agent_connectors._rate_limit_reset import ResetHeaderConnector
from soc_agent_connectors.action_models import (
    HOSTNAME,
    ActionDone,
    ActionInput,
    HostInput,
    StateAnswer,
    StateQuery,
)
from soc_agent_connectors.base import (
    ENTRY_POINT_GROUP,
    Capability,
    CapabilityKind,
    Connector,
    EmptyConfig,
    capability,
    installed_connector_names,
    load_connector_classes,
)
from soc_agent_connectors.redact import (
    REDACTED,
    RedactingFilter,
    is_sensitive_key,
    redact_data,
    redact_text,
    scrub_known,
)
from soc_agent_connectors.risk_ledger import RiskLedgerConnector, RiskSource
from soc_agent_connectors.secrets import SecretRef, SecretUnavailableError
from soc_agent_connectors.verdict_history import VerdictHistoryConnector, VerdictSource

__all__ = [
    "DATA_PATH",
    "ENTRY_POINT_GROUP",
    "HOSTNAME",
    "REDACTED",
    "ActionDone",
    "ActionInput",
    "Capability",
    "CapabilityKind",
    "CircuitOpenError",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "EgressDeniedError",
    "EmptyConfig",
    "HostInput",
    "HttpConnector",
    "HttpConnectorConfig",
    "HttpRuntime",
    "MicrosoftOAuth2Config",
    "OAuth2Config",
    "OAuth2Connector",
    "RedactingFilter",
    "ResetHeaderConnector",
    "RiskLedgerConnector",
    "RiskSource",
    "SecretRef",
    "SecretUnavailableError",
    "StateAnswer",
    "StateQuery",
    "VendorHTTPError",
    "VerdictHistoryConnector",
    "VerdictSource",
    "capability",
    "configured_host_problem",
    "installed_connector_names",
    "is_sensitive_key",
    "load_connector_classes",
    "redact_data",
    "redact_text",
    "scrub_known",
]
