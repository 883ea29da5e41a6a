"""Analysts' acts on single actions are kept as labels on the action, whatever the door.

Proposals come from a real run of the endpoint-malware playbook; approvals,
rejections, reviews and rollbacks go through the ProposalService and the executor
built by `open_components`, so these are the labels every door leaves.
"""

from __future__ import annotations

import pytest

from soc_agent.models import ActionJudgement, Approver, ProposalStatus, Role
from soc_agent.pipeline.proposals import ProposalConflict
from soc_agent.runtime.components import Components
from tests.integration.conftest import Deployment

ALERT = "crowdstrike_ws-eng-007_known_malware_high.json"
ALICE = Approver(name="token:alice", role=Role.SENIOR)
BOB = Approver(name="token:bob", role=Role.SENIOR)


async def _labels(c: Components, incident_id: str) -> list[tuple[str, str, str, str | None]]:
    return [
        (x.action, x.judgement.value, x.analyst, x.comment)
        for x in await c.store.action_labels(incident_id)
    ]


async def test_approvals_and_rejections_label_the_action_and_a_refusal_does_not(
    deployment: Deployment,
) -> None:
    settings = deployment.settings(
        "endpoint-malware", policy={"agent_autonomy": 2, "four_eyes_min_risk": "high"}
    )
    async with deployment.open(settings) as c:
        await deployment.feed(c, ALERT)
        proposals = {p.request.action: p for p in await c.store.list_proposals()}
        isolate, quarantine = proposals["isolate_host"], proposals["quarantine_file"]
        await c.proposals.approve(isolate.id, ALICE, "beacon seen")
        await c.proposals.approve(isolate.id, BOB)  # four-eyes: the second executes
        await c.proposals.reject(quarantine.id, BOB, "a signed installer")
        with pytest.raises(ProposalConflict, match="not pending"):  # refused: no label
            await c.proposals.approve(quarantine.id, ALICE)
        assert await _labels(c, isolate.incident_id) == [
            ("isolate_host", "approved", "token:alice", "beacon seen"),
            ("isolate_host", "approved", "token:bob", None),
            ("quarantine_file", "rejected", "token:bob", "a signed installer"),
        ]
        (label, *_) = await c.store.action_labels(isolate.incident_id)
        assert (label.action_id, label.target) == (isolate.request.id, "host:ws-eng-007")


async def test_reviews_and_an_analysts_rollback_label_the_action_and_auto_revert_does_not(
    deployment: Deployment,
) -> None:
    settings = deployment.settings(
        "endpoint-malware", policy={"agent_autonomy": 3, "review_sample_rate": 1.0}
    )
    async with deployment.open(settings) as c:
        await deployment.feed(c, ALERT)
        reviews = await c.store.list_proposals(status=ProposalStatus.REVIEW)
        assert len(reviews) == 2, reviews
        upheld, undone = sorted(reviews, key=lambda p: not p.request.reversible)
        incident = upheld.incident_id
        # Reject the reversible one (rolled back by the analyst), uphold the other.
        first, second = (undone, upheld) if undone.request.reversible else (upheld, undone)
        assert first.request.reversible
        out = await c.proposals.reject(first.id, ALICE, "false positive")
        assert out.proposal.status is ProposalStatus.ROLLED_BACK
        await c.proposals.approve(second.id, BOB, "right call")
        labels = await _labels(c, incident)
        assert labels == [
            (first.request.action, "rolled_back", "token:alice", "false positive"),
            (second.request.action, "confirmed", "token:bob", "right call"),
        ]

    # The agent's own rollback (auto-revert at the end of a time-to-live) judges nothing.
    settings = settings.model_copy(
        update={
            "store": deployment.store_path.with_name("auto.db"),
            "policy": settings.policy.model_copy(update={"agent_autonomy": 5}),
        }
    )
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, ALERT)
        executed = [
            a
            for a in await c.store.list_actions()
            if a.status.value == "executed" and a.request.reversible
        ]
        assert len(executed) == 2, [a.action for a in executed]
        await c.executor.rollback(
            executed[0].idempotency_key, actor=settings.agent_id, reason="auto-revert"
        )
        assert await c.store.action_labels(outcome.incident.id) == []
        await c.executor.rollback(
            executed[-1].idempotency_key, actor="token:carol", reason="not needed"
        )
        (label,) = await c.store.action_labels(outcome.incident.id)
        assert (label.judgement, label.analyst, label.comment) == (
            ActionJudgement.ROLLED_BACK,
            "token:carol",
            "not needed",
        )
