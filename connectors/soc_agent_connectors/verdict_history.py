"""Memory of past cases, read-only: how analysts closed incidents on a rule and an entity.

The same answers as the playbooks' `history.verdicts` and `history.last_verdict`,
offered as queries so the reasoning investigator (and any playbook step) can ask
them. The runtime attaches its store after building the connectors; where none
is attached the query fails, so the rules reading it are unevaluated and
escalate, never quietly read as "no history".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, Field

from soc_agent.errors import ConnectorError
from soc_agent.models import Entity, IncidentVerdict
from soc_agent.models.verdict import count_verdicts, latest_verdict
from soc_agent_connectors.base import Connector, EmptyConfig, capability

__all__ = ["VerdictHistoryConnector", "VerdictSource"]

MAX_HISTORY_DAYS = 90  # as far back as the playbooks' history.verdicts may look


class VerdictSource(Protocol):
    async def verdicts_naming(
        self, entities: list[str], since: datetime
    ) -> list[IncidentVerdict]: ...


class VerdictsInput(BaseModel):
    rule: str = Field(min_length=1, max_length=512, description="the detection (alert.rule_key)")
    entity: str = Field(min_length=3, max_length=2048, description="an entity key, host:ws-01")
    days: int = Field(default=30, ge=1, le=MAX_HISTORY_DAYS)


class VerdictCounts(BaseModel):
    rule: str
    entity: str
    days: int
    true_positive: int
    benign_true_positive: int
    false_positive: int
    total: int


class LastVerdictInput(BaseModel):
    entity: str = Field(min_length=3, max_length=2048, description="an entity key, user:jdoe")


class LastVerdict(BaseModel):
    entity: str
    verdict: str | None = Field(description="the latest verdict on an incident naming it")


class VerdictHistoryConnector(Connector):
    """Analysts' verdicts on past incidents, read-only."""

    name = "history"
    description = "How analysts closed past incidents on a rule and an entity (read-only)"
    config_model = EmptyConfig

    def __init__(self, config: EmptyConfig) -> None:
        super().__init__(config)
        self._source: VerdictSource | None = None

    def attach(self, source: VerdictSource) -> None:
        self._source = source

    async def _closings(self, entity: str) -> tuple[str, list[IncidentVerdict], datetime]:
        if self._source is None:
            raise ConnectorError("no verdict store is attached in this runtime")
        try:
            key = Entity.from_key(entity).key
        except ValueError as exc:
            raise ConnectorError(str(exc)) from None
        now = datetime.now(UTC)
        found = await self._source.verdicts_naming([key], now - timedelta(days=MAX_HISTORY_DAYS))
        return key, found, now

    @capability(kind="query", scopes=["history:read"], cache_ttl=0)
    async def verdicts(self, args: VerdictsInput) -> VerdictCounts:
        """Counts of the latest verdicts on incidents with this rule and entity."""
        key, found, now = await self._closings(args.entity)
        since = now - timedelta(days=args.days)
        counts = count_verdicts(found, rule=args.rule, entity=key, since=since, until=now)
        return VerdictCounts(rule=args.rule, entity=key, days=args.days, **counts)

    @capability(kind="query", scopes=["history:read"], cache_ttl=0)
    async def last_verdict(self, args: LastVerdictInput) -> LastVerdict:
        """The most recent verdict on an incident naming the entity, or none."""
        key, found, now = await self._closings(args.entity)
        verdict = latest_verdict(found, entity=key, until=now)
        return LastVerdict(entity=key, verdict=verdict.value if verdict else None)
