"""Deprecated: the gateway belongs to the agent (`soc_agent.gateway`, `soc_agent.audit.base`);
connectors never need it. This module goes in 0.3."""

from __future__ import annotations

import warnings

from soc_agent.audit.base import AuditSink
from soc_agent.gateway import Gateway

__all__ = ["AuditSink", "Gateway"]

warnings.warn(
    "soc_agent_connectors.gateway is deprecated; use soc_agent.gateway",
    DeprecationWarning,
    stacklevel=2,
)
