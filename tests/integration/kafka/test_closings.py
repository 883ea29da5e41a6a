"""The verdicts topic is a door for closing incidents, like the API and the approvals topic.

A worker applies closings signed by the API that authenticated the analyst
(`kafka.approvals_key`), through the one closing function: the verdict is kept
and audited under the analyst's identity, once however often it is delivered.
The API keeps a closing before exporting it, so a worker reading that export
(even one older than `kafka.approvals_max_age_seconds`) recognises it as kept.
Anything else (unsigned, forged, stale, a viewer's, an unknown incident) is
dead-lettered with why and its original bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soc_agent.models import (
    Approver,
    Entity,
    EntityType,
    Incident,
    IncidentVerdict,
    Role,
    Severity,
    Verdict,
)
from soc_agent.pipeline.closing import close_incident, verdict_id
from soc_agent.runtime.components import open_components
from soc_agent.runtime.kafka.signed_verdicts import sign_closing
from soc_agent.settings import Settings
from tests.integration.kafka.conftest import KafkaEnv
from tests.integration.kafka.test_signed_verdicts import OTHER_KEY
from tests.integration.kafka.test_worker import APPROVALS_KEY, _headers, _settings, worker

KEY = APPROVALS_KEY.encode()
AMY = Approver.of("token", "amy", Role.ANALYST)
SAM = Approver.of("token", "sam", Role.SENIOR)


def _incident(incident_id: str, host: str, rule: str, at: datetime) -> Incident:
    return Incident(
        id=incident_id,
        title=f"{rule} on {host}",
        severity=Severity.HIGH,
        alert_ids=[f"crowdstrike:ldt:{host}:1"],
        entities=[
            Entity(type=EntityType.HOST, value=host),
            Entity(type=EntityType.USER, value="jdoe"),
        ],
        rules=[f"crowdstrike:{rule}"],
        first_seen=at,
        last_seen=at,
    )


def _closing(
    incident: Incident, analyst: Approver, verdict: Verdict, reason: str, at: datetime
) -> IncidentVerdict:
    """The record the API keeps (and exports) when `analyst` closes `incident` at `at`."""
    return IncidentVerdict(
        id=verdict_id(incident.id, analyst.name, at, verdict, reason),
        incident_id=incident.id,
        verdict=verdict,
        reason=reason,
        closed_by=analyst,
        closed_at=at,
        rules=list(incident.rules),
        entities=sorted({key for entity in incident.entities for key in entity.keys}),
        alert_ids=list(incident.alert_ids),
    )


async def _seed(settings: Settings, now: datetime) -> tuple[Incident, Incident, IncidentVerdict]:
    """Two open incidents; the second already closed by the API three days ago."""
    updater = _incident("inc-7d41c0a2e9f3", "ws-fin-042", "MaliciousFileWritten", now)
    dumping = _incident("inc-2b9e5f81c6d0", "ws-hr-013", "CredentialDumping", now)
    async with open_components(settings) as c:
        await c.store.put_incident(updater)
        await c.store.put_incident(dumping)
        kept = await close_incident(
            c.store,
            c.audit,
            incident_id=dumping.id,
            verdict=Verdict.TRUE_POSITIVE,
            reason="lsass dump confirmed on the EDR console; host reimaged",
            closed_by=SAM,
            at=now - timedelta(days=3),
        )
    return updater, dumping, kept


async def test_signed_closings_are_kept_and_audited_once_and_the_rest_dead_lettered(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics(partitions=1)
    settings = _settings(tmp_path, kafka.config(approvals_key=APPROVALS_KEY))
    now = datetime.now(UTC)
    updater, dumping, kept = await _seed(settings, now)

    closing = _closing(
        updater, AMY, Verdict.FALSE_POSITIVE, "signed vendor updater; ticket CHG-1042", now
    )
    genuine = sign_closing(closing, KEY)
    later = _closing(updater, SAM, Verdict.TRUE_POSITIVE, "the updater was trojanised", now)
    api_export = sign_closing(kept, KEY)  # the API's own, read by a worker days later
    refused = {
        "stale": sign_closing(
            _closing(dumping, AMY, Verdict.FALSE_POSITIVE, "test box", now - timedelta(days=2)),
            KEY,
        ),
        "forged": sign_closing(
            _closing(updater, SAM, Verdict.TRUE_POSITIVE, "ransomware", now), OTHER_KEY.encode()
        ),
        "unsigned": json.dumps(
            _closing(updater, SAM, Verdict.TRUE_POSITIVE, "ransomware", now).model_dump(mode="json")
        ).encode(),
        "viewer": sign_closing(
            _closing(
                updater,
                Approver.of("token", "vic", Role.VIEWER),
                Verdict.BENIGN_TRUE_POSITIVE,
                "looks like the usual updater",
                now,
            ),
            KEY,
        ),
        "unknown incident": sign_closing(
            _closing(
                _incident("inc-000000000000", "ws-gone-01", "MaliciousFileWritten", now),
                AMY,
                Verdict.FALSE_POSITIVE,
                "duplicate of another ticket",
                now,
            ),
            KEY,
        ),
    }
    records: list[tuple[bytes | None, bytes]] = [
        (updater.id.encode(), genuine),
        (updater.id.encode(), genuine),  # redelivered
        (updater.id.encode(), sign_closing(later, KEY)),  # a senior analyst closes again
        (updater.id.encode(), genuine),  # the superseded closing, redelivered once more
        (dumping.id.encode(), api_export),
        (dumping.id.encode(), refused["stale"]),
        (updater.id.encode(), refused["forged"]),
        (updater.id.encode(), refused["unsigned"]),
        (updater.id.encode(), refused["viewer"]),
        (b"inc-000000000000", refused["unknown incident"]),
    ]
    sent = await kafka.produce(kafka.topics.verdicts, records, headers=[("trace", b"chg-1042")])
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.verdicts, sent, within=60)
    report = reports[0]
    assert report.closings == {"closed": 2, "duplicate": 3, "dead_letter": 5}
    assert report.dead_letters == 5

    async with open_components(settings) as c:
        latest = await c.store.incident_verdict(updater.id)
        assert latest is not None
        assert (latest.id, latest.closed_by, latest.verdict) == (
            later.id,
            SAM,
            Verdict.TRUE_POSITIVE,
        )  # the superseded closing, delivered again, did not come back
        assert latest.rules == updater.rules and "host:ws-fin-042" in latest.entities
        assert await c.store.incident_verdict(dumping.id) == kept  # the stale one changed nothing
        audited = await c.audit.list(action_prefix="incident.close")
        assert [(e.subject, e.actor, e.outcome) for e in audited] == [
            (dumping.id, SAM.name, "true_positive"),  # the API's, before the worker ran
            (updater.id, AMY.name, "false_positive"),
            (updater.id, SAM.name, "true_positive"),
        ]
        assert audited[1].details == {"verdict_id": closing.id, "role": "analyst"}
        letters = await c.audit.list(action_prefix="alert.dead_letter")
        assert len(letters) == 5

    dlq = await kafka.read_all(kafka.topics.dlq)
    reasons = {r.value: _headers(r)["soc-dlq-reason"] for r in dlq}
    assert set(reasons) == set(refused.values())  # the original bytes, each once
    assert "too old" in reasons[refused["stale"]]
    assert "signature does not verify" in reasons[refused["forged"]]
    assert "unsigned" in reasons[refused["unsigned"]]
    assert "needs the analyst role" in reasons[refused["viewer"]]
    assert "no incident" in reasons[refused["unknown incident"]]
    for record in dlq:
        headers = _headers(record)
        assert headers["soc-dlq-topic"] == kafka.topics.verdicts
        assert headers["trace"] == "chg-1042"  # the original headers travel along
    assert {r.key for r in dlq} == {updater.id.encode(), dumping.id.encode(), b"inc-000000000000"}
