"""The history connector over a real store: what the investigator and playbook steps read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from soc_agent_connectors import VerdictHistoryConnector
from soc_agent_connectors.base import EmptyConfig

from soc_agent.errors import ConnectorError
from soc_agent.models import Approver, IncidentVerdict, Role, Verdict
from soc_agent.store import SQLiteStore

RULE = "elastic:3e9c7a51-6d2b-4f08-b1a4-7c5e9d20f613"


def closing(n: int, verdict: Verdict, days_ago: float) -> IncidentVerdict:
    return IncidentVerdict(
        id=f"v-{n}",
        incident_id=f"inc-{n}",
        verdict=verdict,
        reason="closed",
        closed_by=Approver.of("token", "alice", Role.ANALYST),
        closed_at=datetime.now(UTC) - timedelta(days=days_ago),
        rules=[RULE],
        entities=["host:build-01", "user:svc-build"],
    )


async def test_the_history_connector_answers_from_the_store(store: SQLiteStore) -> None:
    for n, days_ago in enumerate((1, 2, 3)):
        await store.save_verdict(closing(n, Verdict.FALSE_POSITIVE, days_ago))
    await store.save_verdict(closing(9, Verdict.TRUE_POSITIVE, 40))
    history = VerdictHistoryConnector(EmptyConfig())
    history.attach(store)
    counts = await history.invoke("verdicts", {"rule": RULE, "entity": "host:BUILD-01", "days": 30})
    assert (counts["false_positive"], counts["true_positive"], counts["total"]) == (3, 0, 3)
    assert counts["entity"] == "host:build-01"
    last = await history.invoke("last_verdict", {"entity": "user:svc-build"})
    assert last == {"entity": "user:svc-build", "verdict": "false_positive"}
    none = await history.invoke("last_verdict", {"entity": "user:someone-else"})
    assert none["verdict"] is None


async def test_without_a_store_or_with_a_bad_key_the_query_fails() -> None:
    history = VerdictHistoryConnector(EmptyConfig())
    with pytest.raises(ConnectorError, match="no verdict store"):
        await history.invoke("last_verdict", {"entity": "host:x"})
