"""Closing an incident through the one closing function: a repeated closing is one record
and one audit entry, whichever door delivered it twice (an API retry, a redelivered
Kafka record)."""

from __future__ import annotations

from datetime import UTC, datetime

from soc_agent.audit.log import SQLiteAuditLog
from soc_agent.models import Approver, Entity, EntityType, Incident, Role, Severity, Verdict
from soc_agent.pipeline.closing import close_incident
from soc_agent.store import SQLiteStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE = Approver.of("token", "alice", Role.ANALYST)


async def test_the_same_closing_twice_is_one_record_and_one_audit_entry(
    store: SQLiteStore, audit: SQLiteAuditLog
) -> None:
    await store.put_incident(
        Incident(
            id="inc-1",
            title="encoded PowerShell",
            severity=Severity.HIGH,
            alert_ids=["elastic:1"],
            entities=[Entity(type=EntityType.HOST, value="build-01")],
            rules=["elastic:encoded-powershell"],
            first_seen=T0,
            last_seen=T0,
        )
    )

    async def close(reason: str) -> str:
        record = await close_incident(
            store,
            audit,
            incident_id="inc-1",
            verdict=Verdict.FALSE_POSITIVE,
            reason=reason,
            closed_by=ALICE,
            at=T0,
        )
        return record.id

    first = await close("the nightly build")
    assert await close("the nightly build") == first
    other = await close("the nightly build, again")  # a different closing is a new record
    assert other != first
    entries = await audit.list(action_prefix="incident.close")
    assert [e.details["verdict_id"] for e in entries] == [first, other]
    assert [v.id for v in await store.list_verdicts()] == [other, first]
