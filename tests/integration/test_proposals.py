"""Proposals end to end: queued by the real pipeline, decided by analysts, executed at most once.

The proposals come from a real run (a high-severity CrowdStrike detection at
autonomy level 2, so both of its actions are proposed); approvals, rejections
and expiry go through the ProposalService built by `open_components`, and the
recording executor's journal shows what was actually done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest

from soc_agent.models import Approval, Approver, Proposal, ProposalStatus, Role
from soc_agent.pipeline.proposals import (
    RESUME_GRACE,
    ProposalConflict,
    ProposalForbidden,
    ProposalNotFound,
    ProposalOutcome,
)
from soc_agent.runtime.components import Components
from soc_agent.runtime.embedded import run_embedded
from tests.integration.conftest import Deployment

ALERT = "crowdstrike_ws-eng-007_known_malware_high.json"  # high severity: 1 h to decide
BEACON = "63599751f415c860417babb20cb438fdedd55411f2cfcd2ea6c186ed3cf3b91c"
ALICE, BOB = "token:alice", "token:bob"


def _as(name: str, role: Role = Role.SENIOR) -> Approver:
    """An analyst as an authenticated door vouches for them."""
    return Approver(name=name, role=role)


@asynccontextmanager
async def _queued(deployment: Deployment, **policy: Any) -> AsyncIterator[Components]:
    settings = deployment.settings("endpoint-malware", policy={"agent_autonomy": 2, **policy})
    async with deployment.open(settings) as c:
        await deployment.feed(c, ALERT)
        yield c


@pytest.fixture
async def queued(deployment: Deployment) -> AsyncIterator[Components]:
    """Both actions of one incident waiting for an analyst (single approver)."""
    async with _queued(deployment) as c:
        yield c


async def _proposal(c: Components, action: str) -> Proposal:
    (found,) = [p for p in await c.store.list_proposals() if p.request.action == action]
    return found


async def _status(c: Components, proposal: Proposal) -> ProposalStatus:
    stored = await c.store.get_proposal(proposal.id)
    assert stored is not None
    return stored.status


async def _trail(c: Components, proposal: Proposal) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.outcome) for e in await c.audit.list(subject=proposal.id)]


async def _executions(c: Components) -> list[dict[str, Any]]:
    return [e.details for e in await c.audit.list(action_prefix="action.execute")]


async def test_queued_by_the_pipeline_with_severity_expiry(
    queued: Components, deployment: Deployment
) -> None:
    proposals = await queued.store.list_proposals()
    assert {(p.request.action, p.request.target.value) for p in proposals} == {
        ("isolate_host", "ws-eng-007"),
        ("quarantine_file", BEACON),
    }
    for p in proposals:
        assert p.status is ProposalStatus.PENDING
        assert p.request.rule == "autonomy.collaborator"
        assert (p.severity, p.expires_at - p.created_at) == ("high", timedelta(hours=1))
        assert await _trail(queued, p) == [("proposal.create", "soc-agent", "pending")]
    assert deployment.journal() == []


async def test_approval_executes_once(queued: Components, deployment: Deployment) -> None:
    proposal = await _proposal(queued, "isolate_host")
    done = await queued.proposals.approve(proposal.id, _as(ALICE), "beacon confirmed on host")
    assert done.proposal.status is ProposalStatus.EXECUTED
    assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]
    assert deployment.journal()[0]["idempotency_key"] == proposal.request.idempotency_key

    for analyst in (ALICE, BOB):  # nothing left to decide; nothing runs again
        with pytest.raises(ProposalConflict, match="not pending"):
            await queued.proposals.approve(proposal.id, _as(analyst))
    with pytest.raises(ProposalConflict, match="not pending"):
        await queued.proposals.reject(proposal.id, _as(BOB))
    assert len(deployment.journal()) == 1

    stored = await queued.store.get_proposal(proposal.id)
    assert stored is not None and stored.status is ProposalStatus.EXECUTED
    assert [(a.analyst, a.verdict, a.comment) for a in stored.approvals] == [
        (ALICE, "approve", "beacon confirmed on host")
    ]
    assert await _trail(queued, proposal) == [
        ("proposal.create", "soc-agent", "pending"),
        ("proposal.approve", ALICE, "approved"),
    ]
    (execution,) = await _executions(queued)
    assert execution["approved_by"] == [ALICE]
    # the other proposal of the incident is untouched
    assert (await _proposal(queued, "quarantine_file")).status is ProposalStatus.PENDING
    assert (await queued.audit.verify()).ok


async def test_concurrent_approvals_execute_once(
    queued: Components, deployment: Deployment
) -> None:
    proposal = await _proposal(queued, "isolate_host")
    results = await asyncio.gather(
        queued.proposals.approve(proposal.id, _as(ALICE)),
        queued.proposals.approve(proposal.id, _as(BOB)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, ProposalOutcome)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ProposalConflict)
    assert won[0].proposal.status is ProposalStatus.EXECUTED

    assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]
    assert len(await _executions(queued)) == 1
    approvals = [
        e for e in await queued.audit.list(subject=proposal.id) if e.action == "proposal.approve"
    ]
    assert len(approvals) == 1
    assert approvals[0].actor == won[0].proposal.approvals[0].analyst
    assert (await queued.audit.verify()).ok


async def test_four_eyes_needs_two_distinct_analysts(deployment: Deployment) -> None:
    async with _queued(deployment, four_eyes_min_risk="high") as c:
        proposal = await _proposal(c, "isolate_host")  # risk high: four-eyes
        assert proposal.request.required_approvals == 2
        assert (await _proposal(c, "quarantine_file")).request.required_approvals == 1

        first = await c.proposals.approve(proposal.id, _as(ALICE))
        assert first.proposal.status is ProposalStatus.PENDING
        assert "needs 1 more approver" in first.message
        with pytest.raises(ProposalConflict, match="four-eyes"):
            await c.proposals.approve(proposal.id, _as(ALICE))
        assert deployment.journal() == []

        second = await c.proposals.approve(proposal.id, _as(BOB))
        assert second.proposal.status is ProposalStatus.EXECUTED
        assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]
        assert await _trail(c, proposal) == [
            ("proposal.create", "soc-agent", "pending"),
            ("proposal.approve", ALICE, "awaiting second approver"),
            ("proposal.approve", BOB, "approved"),
        ]
        (execution,) = await _executions(c)
        assert execution["approved_by"] == [ALICE, BOB]
        assert (await c.audit.verify()).ok


async def test_identities_are_namespaced_and_compared_canonically(
    deployment: Deployment,
) -> None:
    async with _queued(deployment, four_eyes_min_risk="high") as c:
        proposal = await _proposal(c, "isolate_host")
        await c.proposals.approve(proposal.id, _as("token:Senior-1"))
        # the same person, however the name is cased
        with pytest.raises(ProposalConflict, match="four-eyes"):
            await c.proposals.approve(proposal.id, _as("token:senior-1"))
        assert deployment.journal() == []
        # an OIDC user who happens to be called like a token holder is someone else
        done = await c.proposals.approve(proposal.id, _as("oidc:senior-1"))
        assert set(done.proposal.approvers) == {"token:senior-1", "oidc:senior-1"}
        assert done.proposal.status is ProposalStatus.EXECUTED
        trail = await _trail(c, proposal)
        assert [actor for _, actor, _ in trail[1:]] == ["token:senior-1", "oidc:senior-1"]


def test_an_approver_is_always_a_namespaced_identity() -> None:
    for bare in ("alice", "analyst:alice", "token:", "token:   "):
        with pytest.raises(ValueError, match="namespaced identity"):
            Approver(name=bare, role=Role.SENIOR)
    assert Approver.of("token", " Alice ", Role.SENIOR).name == "token:alice"


async def test_rejection_executes_nothing(queued: Components, deployment: Deployment) -> None:
    proposal = await _proposal(queued, "isolate_host")
    out = await queued.proposals.reject(proposal.id, _as(ALICE), "host is a malware sandbox")
    assert out.proposal.status is ProposalStatus.REJECTED
    with pytest.raises(ProposalConflict, match="rejected, not pending"):
        await queued.proposals.approve(proposal.id, _as(BOB))

    assert deployment.journal() == []
    assert await _executions(queued) == []
    stored = await queued.store.get_proposal(proposal.id)
    assert stored is not None and stored.status is ProposalStatus.REJECTED
    assert await _trail(queued, proposal) == [
        ("proposal.create", "soc-agent", "pending"),
        ("proposal.reject", ALICE, "rejected"),
    ]
    assert (await queued.audit.verify()).ok


async def test_expired_proposal_escalates_and_never_executes(
    queued: Components, deployment: Deployment
) -> None:
    proposal = await _proposal(queued, "isolate_host")
    deployment.clock.advance(minutes=59)
    assert await _status(queued, proposal) is ProposalStatus.PENDING

    deployment.clock.advance(minutes=2)  # past the one hour a high-severity proposal gets
    with pytest.raises(ProposalConflict, match="expired"):
        await queued.proposals.approve(proposal.id, _as(ALICE))
    assert await _status(queued, proposal) is ProposalStatus.EXPIRED
    with pytest.raises(ProposalConflict, match="expired, not pending"):
        await queued.proposals.approve(proposal.id, _as(BOB))

    assert deployment.journal() == []
    assert await _executions(queued) == []
    assert await _trail(queued, proposal) == [
        ("proposal.create", "soc-agent", "pending"),
        ("proposal.expire", "soc-agent", "escalated"),
    ]
    assert (await queued.audit.verify()).ok


async def test_expire_due_expires_every_overdue_proposal(
    queued: Components, deployment: Deployment
) -> None:
    deployment.clock.advance(minutes=30)
    assert await queued.proposals.expire_due() == []

    deployment.clock.advance(minutes=31)
    report = await run_embedded(queued, [])  # the embedded run sweeps first
    assert report.expired_proposals == 2
    assert await queued.proposals.expire_due() == []  # nothing expires twice

    proposals = await queued.store.list_proposals()
    assert {p.status for p in proposals} == {ProposalStatus.EXPIRED}
    expiries = await queued.audit.list(action_prefix="proposal.expire")
    assert sorted(e.subject for e in expiries) == sorted(p.id for p in proposals)
    assert {e.outcome for e in expiries} == {"escalated"}
    assert deployment.journal() == []
    assert (await queued.audit.verify()).ok


async def _approved_then_crashed(c: Components, proposal: Proposal) -> None:
    """What an approval leaves when the process dies between marking and executing."""
    now = c.clock()
    crashed = proposal.model_copy(
        update={
            "status": ProposalStatus.APPROVED,
            "approvals": [Approval(analyst=ALICE, verdict="approve", at=now)],
            "updated_at": now,
        }
    )
    assert await c.store.update_proposal(crashed, expected_version=proposal.version)


async def test_the_agent_never_decides_its_own_proposal(
    queued: Components, deployment: Deployment
) -> None:
    proposal = await _proposal(queued, "isolate_host")
    agent = queued.settings.agent_id
    # through any door, in any case or Unicode look-alike (full-width letters)
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in agent)
    for name in (f"token:{agent}", f"oidc:{agent.upper()}", f"token:{full_width}"):
        with pytest.raises(ProposalForbidden, match="agent's own identity"):
            await queued.proposals.approve(proposal.id, _as(name))
        with pytest.raises(ProposalForbidden, match="agent's own identity"):
            await queued.proposals.reject(proposal.id, _as(name))
    assert await _status(queued, proposal) is ProposalStatus.PENDING
    assert deployment.journal() == []


async def test_an_unknown_proposal_raises_a_typed_error(queued: Components) -> None:
    with pytest.raises(ProposalNotFound, match="prop-nope"):
        await queued.proposals.approve("prop-nope", _as(ALICE))
    with pytest.raises(ProposalNotFound, match="prop-nope"):
        await queued.proposals.resume("prop-nope")


async def test_an_approval_cut_off_by_a_crash_is_resumed_by_the_next_run(
    queued: Components, deployment: Deployment
) -> None:
    proposal = await _proposal(queued, "isolate_host")
    await _approved_then_crashed(queued, proposal)

    report = await run_embedded(queued, [])  # within the grace: the approver may be executing
    assert report.resumed_proposals == 0
    assert deployment.journal() == []

    deployment.clock.advance(seconds=RESUME_GRACE.total_seconds() + 1)
    report = await run_embedded(queued, [])
    assert report.resumed_proposals == 1
    assert await _status(queued, proposal) is ProposalStatus.EXECUTED
    assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]
    (execution,) = await _executions(queued)
    assert execution["approved_by"] == [ALICE]

    deployment.clock.advance(minutes=5)
    assert (await run_embedded(queued, [])).resumed_proposals == 0  # nothing runs twice
    assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]
    assert (await queued.audit.verify()).ok


async def test_resuming_while_another_worker_executes_leaves_it_approved(
    queued: Components, deployment: Deployment
) -> None:
    proposal = await _proposal(queued, "isolate_host")
    await _approved_then_crashed(queued, proposal)
    # Another worker claimed the action a moment ago and is calling the connector.
    claim = await queued.store.claim_action(
        proposal.request, proposal.incident_id, queued.clock(), budget=None
    )
    assert claim.claimed
    deployment.clock.advance(seconds=RESUME_GRACE.total_seconds() + 1)

    (outcome,) = await queued.proposals.resume_approved()
    assert outcome.proposal.status is ProposalStatus.APPROVED
    assert "being executed" in outcome.message
    assert await _status(queued, proposal) is ProposalStatus.APPROVED
    assert deployment.journal() == []


async def test_the_role_for_the_risk_tier_is_the_services_rule_whatever_the_door(
    queued: Components, deployment: Deployment
) -> None:
    """isolate_host is high risk: `api.approve_roles` wants a senior for it, at every door."""
    proposal = await _proposal(queued, "isolate_host")
    assert proposal.request.risk.value == "high"
    for verb in (queued.proposals.approve, queued.proposals.reject):
        with pytest.raises(ProposalForbidden, match="needs the senior role; token:amy is"):
            await verb(proposal.id, _as("token:amy", Role.ANALYST))
    assert await _status(queued, proposal) is ProposalStatus.PENDING
    done = await queued.proposals.approve(proposal.id, _as(ALICE, Role.SENIOR))
    assert done.proposal.status is ProposalStatus.EXECUTED
    assert deployment.journal_actions() == [("isolate_host", "ws-eng-007")]


async def test_uphold_and_reject_racing_on_a_review_item_leave_state_and_ledger_agreeing(
    deployment: Deployment,
) -> None:
    """The review's verdict is written first (one wins); only a rejection that won undoes."""
    settings = deployment.settings(
        "endpoint-malware", policy={"agent_autonomy": 3, "review_sample_rate": 1.0}
    )
    for attempt in range(6):  # both orders of arrival, several times
        deployment.journal_path.unlink(missing_ok=True)
        settings = settings.model_copy(
            update={"store": deployment.store_path.with_name(f"race-{attempt}.db")}
        )
        async with deployment.open(settings) as c:
            await deployment.feed(c, ALERT)
            reviews = await c.store.list_proposals(status=ProposalStatus.REVIEW)
            item = next(p for p in reviews if p.request.reversible)
            calls = [
                c.proposals.approve(item.id, _as(ALICE), "looks right"),
                c.proposals.reject(item.id, _as(BOB), "false positive"),
            ]
            if attempt % 2:
                calls.reverse()
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(isinstance(r, ProposalOutcome) for r in results) == 1, results
            final = await c.store.get_proposal(item.id)
            record = await c.store.get_action(item.request.idempotency_key)
            assert final is not None and record is not None
            undone = [
                e
                for e in deployment.journal()
                if str(e["action"]).startswith(("release", "unblock"))
            ]
            if final.status is ProposalStatus.CONFIRMED:
                assert record.status.value == "executed" and undone == []
            else:
                assert final.status is ProposalStatus.ROLLED_BACK
                assert record.status.value == "rolled_back" and len(undone) == 1


async def test_every_outcome_carries_the_version_it_was_stored_with(
    deployment: Deployment,
) -> None:
    async with _queued(deployment, four_eyes_min_risk="high") as c:
        isolate = await _proposal(c, "isolate_host")
        first = await c.proposals.approve(isolate.id, _as(ALICE))
        stored = await c.store.get_proposal(isolate.id)
        assert stored is not None and first.proposal.version == stored.version
        quarantine = await _proposal(c, "quarantine_file")
        rejected = await c.proposals.reject(quarantine.id, _as(BOB))
        stored = await c.store.get_proposal(quarantine.id)
        assert stored is not None and rejected.proposal.version == stored.version
        # so a client may decide again with what it was given
        second = await c.proposals.approve(isolate.id, _as(BOB))
        stored = await c.store.get_proposal(isolate.id)
        assert stored is not None and second.proposal.version == stored.version
