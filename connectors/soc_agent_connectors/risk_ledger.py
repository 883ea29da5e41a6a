"""Entity risk, read-only: what the risk ledger holds for one entity (`risk.lookup`).

The runtime attaches its ledger after building the connectors (the embedded
runtime's in-process one). Where none is attached the lookup fails, so the
playbook steps reading it fail and the rules that need them are escalated,
never quietly read as "no risk".
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from soc_agent.errors import ConnectorError
from soc_agent_connectors.base import Connector, EmptyConfig, capability

__all__ = ["RiskLedgerConnector", "RiskSource"]


class RiskSource(Protocol):
    def lookup(self, entity_type: str, value: str) -> dict[str, Any]: ...


class RiskInput(BaseModel):
    type: Literal["host", "user", "ip", "cloud_resource", "domain", "email", "url", "file_hash"]
    value: str = Field(min_length=1, max_length=2048)


class RiskContribution(BaseModel):
    alert_id: str
    at: str
    title: str
    points: int
    rules: list[dict[str, Any]] = Field(default_factory=list)
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)


class RiskOutput(BaseModel):
    entity: str
    total: int = Field(description="risk in the window ending soonest after the latest alert")
    threshold: int
    window_start: str
    window_end: str
    alert_count: int
    dropped: int = Field(description="alerts past the window's bound, not counted")
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    contributions: list[RiskContribution] = Field(
        default_factory=list, description="the highest-scoring, at most 50"
    )


class RiskLedgerConnector(Connector):
    """The runtime's entity risk ledger, read-only."""

    name = "risk"
    description = "Entity risk accumulated over time windows (read-only)"
    config_model = EmptyConfig

    def __init__(self, config: EmptyConfig) -> None:
        super().__init__(config)
        self._source: RiskSource | None = None

    def attach(self, source: RiskSource) -> None:
        self._source = source

    @capability(kind="query", scopes=["risk:read"])
    async def lookup(self, args: RiskInput) -> RiskOutput:
        """An entity's current risk: total, threshold, window and what contributed."""
        if self._source is None:
            raise ConnectorError(
                "no risk ledger in this runtime (risk.enabled is false, or the stream app keeps it)"
            )
        try:
            found = self._source.lookup(args.type, args.value)
        except ValueError:
            raise ConnectorError(f"not a valid {args.type}") from None
        return RiskOutput.model_validate(found)
