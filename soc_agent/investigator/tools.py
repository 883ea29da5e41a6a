"""The lookups the model may run: read-only query capabilities granted to its identity.

Containment and every other action capability are never offered; nor is a
query that needs any scope other than a `:read` one, or one the
investigator's grants do not include. A call the model invents anyway never
reaches a connector (see `loop`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from soc_agent_connectors import CapabilityKind

from soc_agent.gateway import Gateway

__all__ = ["LookupTool", "investigator_grants", "read_only_tools"]


@dataclass(frozen=True)
class LookupTool:
    connector: str
    capability: str
    description: str
    input_schema: dict[str, Any]

    @property
    def name(self) -> str:
        """The tool's name as the model sees it (provider-safe characters only)."""
        return f"{self.connector}__{self.capability}"


def read_only_tools(gateway: Gateway, grants: Mapping[str, Collection[str]]) -> list[LookupTool]:
    """Every query capability whose scopes are all `:read` and all in `grants`."""
    tools: list[LookupTool] = []
    for connector, conn in sorted(gateway.connectors.items()):
        granted = set(grants.get(connector, ()))
        for name, cap in sorted(conn.capabilities().items()):
            if cap.kind is not CapabilityKind.QUERY or cap.fetches_untrusted_urls:
                continue
            if not cap.scopes or not all(s.endswith(":read") and s in granted for s in cap.scopes):
                continue
            tools.append(
                LookupTool(connector, name, cap.description, cap.input_model.model_json_schema())
            )
    return tools


def investigator_grants(grants: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """The read scopes of the agent's grants: what the investigator's own gateway holds."""
    return {
        connector: sorted(s for s in scopes if s.endswith(":read"))
        for connector, scopes in grants.items()
    }
