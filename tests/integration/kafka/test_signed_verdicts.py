"""The approvals topic is a door like the API: signed verdicts only, and the API's rules.

What the outside review did: two records with invented analyst names executed a
high-risk isolate_host. Verdicts must be signed by the door that authenticated
the analyst (`kafka.approvals_key`), and the proposal service applies the same
rules whatever the door: roles per risk tier, four-eyes with distinct
identities, never the agent itself. Anything else is dead-lettered with why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soc_agent.models import ApprovalVerdict, Proposal, Role
from soc_agent.runtime.kafka.signed_verdicts import sign_verdict
from soc_agent.settings import Settings
from tests.integration.kafka.conftest import KafkaEnv
from tests.integration.kafka.test_worker import (
    APPROVALS_KEY,
    _headers,
    _journal,
    _pending_proposal,
    worker,
)

KEY = APPROVALS_KEY
OTHER_KEY = "a-key-the-workers-do-not-know-9876543210ab"


def _signed(
    proposal: Proposal,
    analyst: str,
    role: Role,
    *,
    key: str = KEY,
    verdict: ApprovalVerdict = ApprovalVerdict.APPROVE,
    issued_at: datetime | None = None,
) -> bytes:
    return sign_verdict(
        proposal_id=proposal.id,
        analyst=f"token:{analyst}",  # as the API vouches for a token holder
        role=role,
        verdict=verdict,
        comment=f"{analyst} checked the host",
        issued_at=issued_at or datetime.now(UTC),
        key=key.encode(),
    )


async def _isolation_waiting_for_two(kafka: KafkaEnv, tmp_path: Path) -> tuple[Settings, Proposal]:
    """A worker decides the Falcon sample at collaborator autonomy: a four-eyes isolation."""
    policy = {"agent_autonomy": 2, "four_eyes_actions": ["isolate_host"]}
    settings, isolation = await _pending_proposal(
        kafka, tmp_path, policy=policy, action="isolate_host"
    )
    assert isolation.request.required_approvals == 2
    return settings, isolation


async def test_only_signed_verdicts_that_pass_the_apis_rules_are_applied(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    settings, proposal = await _isolation_waiting_for_two(kafka, tmp_path)
    key = proposal.id.encode()
    invented = [
        json.dumps({"proposal_id": proposal.id, "analyst": who, "verdict": "approve"}).encode()
        for who in ("alice", "bob")
    ]
    refused = {
        "unsigned": invented[0],
        "unsigned again": invented[1],
        "forged": _signed(proposal, "mallory", Role.ADMIN, key=OTHER_KEY),
        "tampered": _signed(proposal, "vic", Role.ANALYST).replace(b'"analyst"', b'"admin"'),
        "role": _signed(proposal, "amy", Role.ANALYST),  # high risk needs senior
        "agent": _signed(proposal, settings.agent_id, Role.ADMIN),
        "stale": _signed(
            proposal, "sam", Role.SENIOR, issued_at=datetime.now(UTC) - timedelta(days=2)
        ),
    }
    again = _signed(proposal, "sam", Role.SENIOR)  # counts once: four-eyes needs another
    first = _signed(proposal, "sam", Role.SENIOR)
    second = _signed(proposal, "ada", Role.ADMIN)
    order = [
        refused["unsigned"],
        refused["unsigned again"],
        refused["forged"],
        refused["tampered"],
        refused["role"],
        refused["agent"],
        refused["stale"],
        first,
        again,
        second,
    ]
    sent = await kafka.produce(kafka.topics.approvals, [(key, v) for v in order])
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.approvals, sent, within=60)
    assert reports[0].approvals == {"dead_letter": 7, "pending": 1, "duplicate": 1, "executed": 1}
    assert [e["action"] for e in _journal(tmp_path)] == ["isolate_host"]

    reasons = {
        r.value: _headers(r)["soc-dlq-reason"] for r in await kafka.read_all(kafka.topics.dlq)
    }
    assert "unsigned" in reasons[refused["unsigned"]]
    assert "signature" in reasons[refused["forged"]]
    assert "signature" in reasons[refused["tampered"]] or "invalid" in reasons[refused["tampered"]]
    assert "needs the senior role" in reasons[refused["role"]]
    assert "agent's own identity" in reasons[refused["agent"]]
    assert "too old" in reasons[refused["stale"]]
    assert set(reasons) == set(refused.values())


async def test_without_a_key_every_verdict_is_dead_lettered(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    settings, proposal = await _isolation_waiting_for_two(kafka, tmp_path)
    keyless = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"approvals_key": None})}
    )
    verdicts = [_signed(proposal, "sam", Role.SENIOR), _signed(proposal, "ada", Role.ADMIN)]
    sent = await kafka.produce(
        kafka.topics.approvals, [(proposal.id.encode(), v) for v in verdicts]
    )
    async with worker(keyless) as reports:
        await kafka.wait_committed(kafka.topics.approvals, sent, within=60)
    assert reports[0].approvals == {"dead_letter": 2}
    assert _journal(tmp_path) == []
    reasons = [_headers(r)["soc-dlq-reason"] for r in await kafka.read_all(kafka.topics.dlq)]
    assert all("kafka.approvals_key" in reason for reason in reasons)
