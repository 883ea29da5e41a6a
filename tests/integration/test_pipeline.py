"""The whole core pipeline with real components: vendor alert in, containment journal out.

Each test feeds vendor-shaped alerts (CrowdStrike EPP detections, Suricata EVE)
through the embedded runtime over a real SQLite store, audit chain, gateway and
the offline connectors, and checks what an operator could observe: the
decision's dispositions and the rule behind each, the recording executor's
journal, the proposals queued, the notifications sent and the audit trail.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from soc_agent.audit import SQLiteAuditLog
from soc_agent.correlate import Correlator
from soc_agent.errors import ConfigError
from soc_agent.ingest import normalize
from soc_agent.models import (
    Alert,
    Approver,
    Decision,
    Disposition,
    EvidenceStatus,
    ProposalStatus,
    Role,
    RunMode,
)
from soc_agent.models.ids import decision_id
from soc_agent.pipeline.controls import set_kill_switch
from soc_agent.pipeline.deciding import GatewayFacts, decide_all
from soc_agent.pipeline.steps import GatewayStepExecutor
from soc_agent.playbooks import build_context, candidates, investigate, score, select_playbook
from soc_agent.policy import review_sampled
from soc_agent.runtime.components import Components, load_all_playbooks
from tests.integration.conftest import ALERTS, Deployment, actions_by_key, only

FIN_042 = "crowdstrike_ws-fin-042_known_malware.json"  # critical, malicious hash: score 100
FIN_042_FOLLOWUP = "crowdstrike_ws-fin-042_followup.json"  # same host, another detection
ENG_007_HIGH = "crowdstrike_ws-eng-007_known_malware_high.json"  # high, malicious: score 90
DC01 = "crowdstrike_dc01_known_malware.json"  # inventory marks dc01 protected
JUMP_01 = "crowdstrike_jump-01_known_malware.json"  # protected only by a config pattern
CRED_THEFT = "crowdstrike_ws-hr-013_credential_dumping.json"  # user l.martin: score 95
C2_BURST = "suricata_c2_burst.jsonl"  # three C2 alerts, three distinct destination IPs
C2_LATER = "suricata_c2_later.jsonl"  # a fourth, two hours later

QAKBOT = "9352480738ad28738e1657f72ee748f93470141f80de69705f5cbbcbf129f377"
BEACON = "63599751f415c860417babb20cb438fdedd55411f2cfcd2ea6c186ed3cf3b91c"


def _as(name: str, role: Role = Role.SENIOR) -> Approver:
    """An analyst as an authenticated door vouches for them."""
    return Approver(name=name, role=role)


async def _audit_actions(components: Components) -> Counter[str]:
    return Counter(e.action for e in await components.audit.list(limit=10_000))


async def _assert_chain_ok(components: Components) -> None:
    result = await components.audit.verify()
    assert result.ok, result


def _no_duplicate_keys(journal: list[dict[str, Any]]) -> None:
    keys = [e["idempotency_key"] for e in journal]
    assert all(keys), journal
    assert len(keys) == len(set(keys)), keys


# --- guardrails ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_file", "host", "policy", "why"),
    [
        pytest.param(DC01, "dc01", {}, "the asset inventory marks it protected", id="inventory"),
        pytest.param(
            JUMP_01,
            "jump-01",
            {"protected": {"hosts": ["jump-*"]}},
            "it matches protected pattern 'jump-*'",
            id="config-pattern",
        ),
    ],
)
async def test_protected_host_is_proposed_and_never_contained(
    deployment: Deployment, alert_file: str, host: str, policy: dict[str, Any], why: str
) -> None:
    async with deployment.open(deployment.settings("endpoint-malware", policy=policy)) as c:
        decision = only(await deployment.feed(c, alert_file))
        acts = actions_by_key(decision)

        isolate = acts[("isolate_host", host)]
        assert decision.score == 100
        assert isolate.disposition is Disposition.PROPOSED
        assert isolate.rule == "guardrail.protected_asset"
        assert why in isolate.reason
        assert isolate.blast_radius["protected"] is True
        # the guardrail is per target: the file quarantine in the same decision executes
        assert acts[("quarantine_file", QAKBOT)].disposition is Disposition.EXECUTED

        assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]
        proposals = await c.store.list_proposals()
        assert [(p.request.action, p.request.target.value, p.status) for p in proposals] == [
            ("isolate_host", host, ProposalStatus.PENDING)
        ]
        assert proposals[0].id in (isolate.outcome or "")
        await _assert_chain_ok(c)


async def test_irreversible_action_is_proposed_not_executed(deployment: Deployment) -> None:
    async with deployment.open(deployment.settings("account-credential-theft")) as c:
        decision = only(await deployment.feed(c, CRED_THEFT))
        acts = actions_by_key(decision)

        revoke = acts[("revoke_sessions", "l.martin")]
        assert (revoke.disposition, revoke.rule) == (Disposition.PROPOSED, "guardrail.irreversible")
        assert revoke.reversible is False
        disable = acts[("disable_user", "l.martin")]
        assert (disable.disposition, disable.rule) == (Disposition.EXECUTED, "threshold.execute")

        assert deployment.journal_actions() == [("disable_user", "l.martin")]
        assert [p.request.action for p in await c.store.list_proposals()] == ["revoke_sessions"]
        await _assert_chain_ok(c)


@pytest.mark.parametrize(
    ("playbook", "alert_file", "policy", "action", "target", "other"),
    [
        pytest.param(
            "account-credential-theft",
            CRED_THEFT,
            {"four_eyes_actions": ["disable_user"]},
            "disable_user",
            "l.martin",
            None,
            id="designated-action",
        ),
        pytest.param(
            "endpoint-malware",
            FIN_042,
            {"four_eyes_min_risk": "high"},
            "isolate_host",
            "ws-fin-042",
            ("quarantine_file", QAKBOT),
            id="high-risk-action",
        ),
    ],
)
async def test_four_eyes_action_becomes_proposal_needing_two_approvers(
    deployment: Deployment,
    playbook: str,
    alert_file: str,
    policy: dict[str, Any],
    action: str,
    target: str,
    other: tuple[str, str] | None,
) -> None:
    async with deployment.open(deployment.settings(playbook, policy=policy)) as c:
        decision = only(await deployment.feed(c, alert_file))
        req = actions_by_key(decision)[(action, target)]
        assert (req.disposition, req.rule) == (Disposition.PROPOSED, "guardrail.four_eyes")
        assert req.required_approvals == 2

        (proposal,) = [p for p in await c.store.list_proposals() if p.request.action == action]
        assert proposal.request.required_approvals == 2
        created = await c.audit.list(subject=proposal.id)
        assert [(e.action, e.details["required_approvals"]) for e in created] == [
            ("proposal.create", 2)
        ]
        assert (action, target) not in deployment.journal_actions()
        if other is not None:  # a medium-risk action in the same decision is not four-eyes
            assert deployment.journal_actions() == [other]
        await _assert_chain_ok(c)


async def test_blast_radius_budget_caps_executions_per_window(deployment: Deployment) -> None:
    policy = {"blast_radius": {"block_ip": {"max_executions": 2, "window_seconds": 3600}}}
    # one alert at a time: the budget under concurrency has its own test below
    settings = deployment.settings("network-c2", policy=policy, max_concurrent_alerts=1)
    async with deployment.open(settings) as c:
        burst = await deployment.feed(c, C2_BURST)
        verdicts = [
            (
                o.decision.actions[0].target.value,
                o.decision.actions[0].disposition,
                o.decision.actions[0].rule,
            )
            for o in burst
            if o.decision
        ]
        assert verdicts == [
            ("198.51.100.11", Disposition.EXECUTED, "threshold.execute"),
            ("198.51.100.12", Disposition.EXECUTED, "threshold.execute"),
            ("198.51.100.13", Disposition.PROPOSED, "guardrail.blast_radius"),
        ]
        third = burst[2].decision.actions[0] if burst[2].decision else None
        assert third is not None
        assert third.blast_radius["budget"] == {
            "action": "block_ip",
            "max_executions": 2,
            "window_seconds": 3600,
            "used": 2,
            "remaining": 0,
        }
        assert [p.request.target.value for p in await c.store.list_proposals()] == ["198.51.100.13"]
        assert deployment.journal_actions() == [
            ("block_ip", "198.51.100.11"),
            ("block_ip", "198.51.100.12"),
        ]

        deployment.clock.advance(seconds=3601)  # the two executions leave the window
        later = only(await deployment.feed(c, C2_LATER))
        block = later.actions[0]
        assert (block.target.value, block.disposition) == ("198.51.100.14", Disposition.EXECUTED)
        assert block.blast_radius["budget"]["used"] == 0
        assert deployment.journal_actions()[-1] == ("block_ip", "198.51.100.14")
        assert len(deployment.journal()) == 3
        await _assert_chain_ok(c)


@pytest.mark.parametrize("switch", ["config", "runtime-flag"])
async def test_kill_switch_turns_every_execution_into_a_proposal(
    deployment: Deployment, switch: str
) -> None:
    policy = {"kill_switch": True} if switch == "config" else {}
    settings = deployment.settings("endpoint-malware", policy=policy)
    async with deployment.open(settings) as c:
        if switch == "runtime-flag":  # flipped by an operator while the agent is running
            flipped = await set_kill_switch(
                c.store, c.audit, settings.policy, True, actor="analyst:maria", at=c.clock()
            )
            assert flipped["active"] is True
        decision = only(await deployment.feed(c, FIN_042))
        assert {(a.action, a.disposition, a.rule) for a in decision.actions} == {
            ("isolate_host", Disposition.PROPOSED, "guardrail.kill_switch"),
            ("quarantine_file", Disposition.PROPOSED, "guardrail.kill_switch"),
        }
        assert deployment.journal() == []
        assert len(await c.store.list_proposals()) == 2
        if switch == "runtime-flag":
            (flip,) = await c.audit.list(action_prefix="control.kill_switch")
            assert (flip.actor, flip.outcome) == ("analyst:maria", "on")

            # switched off again, the next incident executes
            released = await set_kill_switch(
                c.store, c.audit, settings.policy, False, actor="analyst:maria", at=c.clock()
            )
            assert released["active"] is False
            decision = only(await deployment.feed(c, ENG_007_HIGH))
            assert {a.disposition for a in decision.actions} == {Disposition.EXECUTED}
            assert ("isolate_host", "ws-eng-007") in deployment.journal_actions()
        await _assert_chain_ok(c)


@pytest.mark.parametrize("mode", [RunMode.DRY_RUN, RunMode.SHADOW])
async def test_dry_run_and_shadow_record_intent_and_do_nothing(
    deployment: Deployment, mode: RunMode
) -> None:
    settings = deployment.settings("endpoint-malware", policy={"mode": mode.value})
    async with deployment.open(settings) as c:
        outcomes = await deployment.feed(c, FIN_042)
        decision = only(outcomes)
        assert decision.mode is mode
        for req in decision.actions:
            assert req.disposition is Disposition.SKIPPED
            assert req.rule == f"guardrail.{mode.value}"
            assert (req.intended, req.intended_rule) == (Disposition.EXECUTED, "threshold.execute")
            assert req.outcome is None
        assert deployment.journal() == []
        assert await c.store.list_proposals() == []
        assert deployment.notifications() == []
        assert (await _audit_actions(c))["action.execute"] == 0
        await _assert_chain_ok(c)


@pytest.mark.parametrize(
    ("policy", "grants", "rule", "reason_part"),
    [
        pytest.param(
            {"deny_actions": ["isolate_host"]},
            None,
            "guardrail.deny_list",
            "deny list",
            id="deny-list",
        ),
        pytest.param(
            {},
            {"containment": ["containment:read", "file:quarantine"]},
            "guardrail.not_granted",
            "host:contain",
            id="scope-not-granted",
        ),
    ],
)
async def test_denied_action_is_never_attempted(
    deployment: Deployment,
    policy: dict[str, Any],
    grants: dict[str, list[str]] | None,
    rule: str,
    reason_part: str,
) -> None:
    async with deployment.open(
        deployment.settings("endpoint-malware", policy=policy, grants=grants)
    ) as c:
        decision = only(await deployment.feed(c, FIN_042))
        acts = actions_by_key(decision)
        isolate = acts[("isolate_host", "ws-fin-042")]
        assert (isolate.disposition, isolate.rule) == (Disposition.DENIED, rule)
        assert reason_part in isolate.reason
        assert acts[("quarantine_file", QAKBOT)].disposition is Disposition.EXECUTED

        assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]
        assert await c.store.list_proposals() == []
        audit = await _audit_actions(c)
        assert audit["connector.isolate_host"] == 0  # the gateway was never even asked
        assert audit["connector.quarantine_file"] == 1
        await _assert_chain_ok(c)


# --- autonomy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "alert_file", "host", "disposition", "rule"),
    [
        pytest.param(
            1, FIN_042, "ws-fin-042", Disposition.NOTIFIED, "autonomy.operator", id="1-operator"
        ),
        pytest.param(
            2,
            FIN_042,
            "ws-fin-042",
            Disposition.PROPOSED,
            "autonomy.collaborator",
            id="2-collaborator",
        ),
        pytest.param(
            4,
            ENG_007_HIGH,
            "ws-eng-007",
            Disposition.ESCALATED,
            "autonomy.approver.edge_case",
            id="4-approver-edge-case",
        ),
        pytest.param(
            4,
            FIN_042,
            "ws-fin-042",
            Disposition.EXECUTED,
            "threshold.execute",
            id="4-approver-clear-case",
        ),
        pytest.param(
            5,
            ENG_007_HIGH,
            "ws-eng-007",
            Disposition.EXECUTED,
            "threshold.execute",
            id="5-observer",
        ),
    ],
)
async def test_agent_autonomy_level(
    deployment: Deployment,
    level: int,
    alert_file: str,
    host: str,
    disposition: Disposition,
    rule: str,
) -> None:
    settings = deployment.settings("endpoint-malware", policy={"agent_autonomy": level})
    async with deployment.open(settings) as c:
        decision = only(await deployment.feed(c, alert_file))
        isolate = actions_by_key(decision)[("isolate_host", host)]
        assert (isolate.disposition, isolate.rule) == (disposition, rule)
        assert (int(isolate.autonomy), isolate.autonomy_source) == (level, "agent")
        # both actions of the decision get the same treatment at every level
        assert {a.disposition for a in decision.actions} == {disposition}

        proposals = await c.store.list_proposals()
        journal = deployment.journal_actions()
        notes = deployment.notifications()
        if disposition is Disposition.EXECUTED:
            assert ("isolate_host", host) in journal and len(journal) == 2
            assert proposals == [] and notes == []
        else:
            assert journal == []
            assert len(notes) == 1  # one notification per decision that needs a human
            if disposition is Disposition.PROPOSED:
                assert {p.status for p in proposals} == {ProposalStatus.PENDING}
                assert len(proposals) == 2
            else:  # a recommendation or an escalation is never a proposal that could execute
                assert proposals == []
            if disposition is Disposition.ESCALATED:
                assert notes[0]["subject"].startswith("[ESCALATED]")
                assert notes[0]["severity"] == "high"
        await _assert_chain_ok(c)


async def test_consultant_executes_samples_for_review_and_rejection_rolls_back(
    deployment: Deployment,
) -> None:
    settings = deployment.settings(
        "network-c2", policy={"agent_autonomy": 3, "review_sample_rate": 0.5}
    )
    async with deployment.open(settings) as c:
        outcomes = await deployment.feed(c, C2_BURST, C2_LATER)
        blocks = [a for o in outcomes if o.decision for a in o.decision.actions]
        assert len(blocks) == 4
        assert {a.disposition for a in blocks} == {Disposition.EXECUTED}
        assert len(deployment.journal()) == 4

        sampled = {a.target.value for a in blocks if review_sampled(a.idempotency_key, 0.5)}
        assert 0 < len(sampled) < 4, "fixture should sample some executions, not all"
        for a in blocks:
            want = (
                "autonomy.consultant.sample" if a.target.value in sampled else "threshold.execute"
            )
            assert (a.rule, a.review_sample) == (want, a.target.value in sampled)
        reviews = await c.store.list_proposals(status=ProposalStatus.REVIEW)
        assert {p.request.target.value for p in reviews} == sampled
        assert await c.store.list_proposals(status=ProposalStatus.PENDING) == []

        rejected, *upheld = sorted(reviews, key=lambda p: p.request.target.value)
        undo = await c.proposals.reject(rejected.id, _as("token:tomas"), "known partner range")
        assert undo.proposal.status is ProposalStatus.ROLLED_BACK
        target = rejected.request.target.value
        assert deployment.journal_actions()[-1] == ("unblock_ip", target)
        assert deployment.journal()[-1]["idempotency_key"] == (
            f"{rejected.request.idempotency_key}:rollback"
        )
        rollback = await c.audit.list(action_prefix="action.rollback")
        assert [(e.actor, e.outcome) for e in rollback] == [("token:tomas", "rolled_back")]
        for item in upheld:  # upholding a review changes nothing outside
            done = await c.proposals.approve(item.id, _as("token:tomas"))
            assert done.proposal.status is ProposalStatus.CONFIRMED
        assert len(deployment.journal()) == 5
        await _assert_chain_ok(c)


@pytest.mark.parametrize(
    ("playbook", "policy", "expected"),
    [
        pytest.param(
            "endpoint-malware-collaborator",
            {"agent_autonomy": 5},
            {
                "isolate_host": (
                    Disposition.PROPOSED,
                    "autonomy.collaborator",
                    2,
                    "playbook:endpoint-malware-collaborator",
                ),
                "quarantine_file": (
                    Disposition.PROPOSED,
                    "autonomy.collaborator",
                    2,
                    "playbook:endpoint-malware-collaborator",
                ),
            },
            id="playbook-caps-agent",
        ),
        pytest.param(
            "endpoint-malware-collaborator",
            {"agent_autonomy": 1},
            {
                "isolate_host": (Disposition.NOTIFIED, "autonomy.operator", 1, "agent"),
                "quarantine_file": (Disposition.NOTIFIED, "autonomy.operator", 1, "agent"),
            },
            id="agent-caps-playbook",
        ),
        pytest.param(
            "endpoint-malware",
            {"agent_autonomy": 5, "action_autonomy": {"isolate_host": 2}},
            {
                "isolate_host": (
                    Disposition.PROPOSED,
                    "autonomy.collaborator",
                    2,
                    "action:isolate_host",
                ),
                "quarantine_file": (Disposition.EXECUTED, "threshold.execute", 5, "agent"),
            },
            id="action-caps-agent",
        ),
    ],
)
async def test_most_restrictive_autonomy_knob_wins(
    deployment: Deployment,
    playbook: str,
    policy: dict[str, Any],
    expected: dict[str, tuple[Disposition, str, int, str]],
) -> None:
    async with deployment.open(deployment.settings(playbook, policy=policy)) as c:
        decision = only(await deployment.feed(c, FIN_042))
        got = {
            a.action: (a.disposition, a.rule, int(a.autonomy), a.autonomy_source)
            for a in decision.actions
        }
        assert got == expected
        executed = {a for a, v in expected.items() if v[0] is Disposition.EXECUTED}
        assert {action for action, _ in deployment.journal_actions()} == executed
        await _assert_chain_ok(c)


# --- investigation ------------------------------------------------------------------------


async def test_spent_step_budget_escalates_without_acting(deployment: Deployment) -> None:
    async with deployment.open(deployment.settings("endpoint-budget-starved")) as c:
        decision = only(await deployment.feed(c, FIN_042))
        assert decision.concluded is False
        assert decision.score == 95  # the score alone would have executed
        (isolate,) = decision.actions
        assert (isolate.disposition, isolate.rule) == (
            Disposition.ESCALATED,
            "investigation.incomplete",
        )

        assert decision.investigation_id is not None
        investigation = await c.store.get_investigation(decision.investigation_id)
        assert investigation is not None
        assert investigation.steps_used == 1
        assert "step budget exhausted" in (investigation.reason or "")
        statuses = {e.step: e.status for e in investigation.evidence}
        assert statuses == {
            "host_asset": EvidenceStatus.OK,
            "host_activity": EvidenceStatus.NOT_RUN,
        }

        assert deployment.journal() == []
        assert await c.store.list_proposals() == []
        (note,) = deployment.notifications()
        assert note["subject"].startswith("[ESCALATED]")
        await _assert_chain_ok(c)


async def test_required_step_denied_by_gateway_escalates_missing_evidence(
    deployment: Deployment,
) -> None:
    settings = deployment.settings("endpoint-malware", grants={"asset_inventory": []})
    async with deployment.open(settings) as c:
        decision = only(await deployment.feed(c, FIN_042))
        assert decision.concluded is True
        acts = actions_by_key(decision)
        isolate = acts[("isolate_host", "ws-fin-042")]
        assert (isolate.disposition, isolate.rule) == (
            Disposition.ESCALATED,
            "investigation.missing_evidence",
        )
        assert "host_asset" in isolate.reason
        # the file quarantine requires only the threat-intel step, which succeeded
        assert acts[("quarantine_file", QAKBOT)].disposition is Disposition.EXECUTED

        assert decision.investigation_id is not None
        investigation = await c.store.get_investigation(decision.investigation_id)
        assert investigation is not None
        assert investigation.by_step()["host_asset"].status is EvidenceStatus.DENIED
        denied = await c.audit.list(action_prefix="connector.denied")
        assert "asset_inventory.lookup_asset" in {e.subject for e in denied}
        assert all(e.details["missing_scopes"] == ["assets:read"] for e in denied)

        assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]
        await _assert_chain_ok(c)


# --- idempotency --------------------------------------------------------------------------


async def test_same_alert_file_three_times_acts_once(deployment: Deployment) -> None:
    """Three runs over the same store, like three `soc-agent run` invocations."""
    settings = deployment.settings("endpoint-malware")
    decisions: list[Decision] = []
    for run in range(3):
        async with deployment.open(settings) as c:
            (outcome,) = await deployment.feed(c, DC01)
            assert outcome.correlation == ("new" if run == 0 else "redelivered")
            assert outcome.fresh is (run == 0)
            assert outcome.decision is not None
            decisions.append(outcome.decision)

    assert len({d.id for d in decisions}) == 1
    assert decisions[0].actions == decisions[2].actions  # outcomes recorded, not redone
    assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]
    _no_duplicate_keys(deployment.journal())
    async with deployment.open(settings) as c:
        proposals = await c.store.list_proposals()
        assert [p.request.target.value for p in proposals] == ["dc01"]
        audit = await _audit_actions(c)
        assert audit["decision.make"] == 1
        assert audit["proposal.create"] == 1
        assert audit["action.execute"] == 1
        assert audit["alert.correlate"] == 3
        await _assert_chain_ok(c)


async def test_grouped_alert_is_redecided_without_repeating_actions(
    deployment: Deployment,
) -> None:
    async with deployment.open(deployment.settings("endpoint-malware")) as c:
        first = only(await deployment.feed(c, FIN_042))
        (second,) = await deployment.feed(c, FIN_042_FOLLOWUP)
        assert second.correlation == "grouped"
        assert second.incident.id == first.incident_id
        assert second.decision is not None and second.fresh
        assert second.decision.id != first.id
        assert len(second.decision.alert_ids) == 2

        again = actions_by_key(second.decision)
        isolate = again[("isolate_host", "ws-fin-042")]
        assert isolate.disposition is Disposition.EXECUTED
        assert (
            isolate.idempotency_key
            == actions_by_key(first)[("isolate_host", "ws-fin-042")].idempotency_key
        )
        assert (isolate.outcome or "").startswith("already_executed")
        assert again[("quarantine_file", BEACON)].outcome == "executed: verified"

        assert deployment.journal_actions() == [
            ("isolate_host", "ws-fin-042"),
            ("quarantine_file", QAKBOT),
            ("quarantine_file", BEACON),
        ]
        _no_duplicate_keys(deployment.journal())
        await _assert_chain_ok(c)


async def test_redecision_does_not_reopen_an_action_already_in_effect(
    deployment: Deployment,
) -> None:
    policy = {"blast_radius": {"isolate_host": {"max_executions": 1, "window_seconds": 3600}}}
    async with deployment.open(deployment.settings("endpoint-malware", policy=policy)) as c:
        first = only(await deployment.feed(c, FIN_042))
        assert actions_by_key(first)[("isolate_host", "ws-fin-042")].disposition is (
            Disposition.EXECUTED
        )
        (second,) = await deployment.feed(c, FIN_042_FOLLOWUP)
        assert second.correlation == "grouped"
        assert deployment.journal_actions().count(("isolate_host", "ws-fin-042")) == 1
        # the host is isolated already: nothing about it should wait for an analyst
        assert await c.store.list_proposals() == []
        isolate = actions_by_key(second.decision)[("isolate_host", "ws-fin-042")]
        assert isolate.disposition is Disposition.EXECUTED


# --- crash recovery -----------------------------------------------------------------------


async def _decide_then_crash(c: Components, alert: Alert) -> Decision:
    """What the agent has done when it dies after saving its decision and before acting.

    The same public pieces agent.handle composes, in the same order, stopping after
    the decision is saved (its executed actions carry no outcome yet).
    """
    correlated = await Correlator(c.store, c.settings.correlation).correlate(alert)
    await c.store.save_alert(alert, correlated.incident.id)
    incident = correlated.incident
    playbook = select_playbook(load_all_playbooks(c.settings), alert, incident)
    assert playbook is not None
    dec_id = decision_id(incident.id, incident.alert_ids)
    investigation = await investigate(
        playbook,
        alert,
        incident,
        GatewayStepExecutor(c.gateway, ref=dec_id),
        investigation_id=f"inv-{dec_id[4:]}",
        now=c.clock,
    )
    await c.store.save_investigation(investigation)
    ctx = build_context(alert, incident, investigation)
    total, breakdown = score(playbook, ctx)
    requests = await decide_all(
        candidates(playbook, ctx),
        GatewayFacts(c.gateway, c.store, clock=c.clock),
        incident_id=incident.id,
        playbook=playbook.name,
        playbook_autonomy=playbook.autonomy,
        score=total,
        investigation=investigation,
        policy=await c.agent.effective_policy(),
    )
    decision = Decision(
        id=dec_id,
        incident_id=incident.id,
        alert_ids=list(incident.alert_ids),
        investigation_id=investigation.id,
        playbook=playbook.name,
        trigger_alert_id=alert.id,
        score=total,
        breakdown=breakdown,
        actions=requests,
        created_at=c.clock(),
    )
    await c.store.save_decision(decision)
    return decision


def _load_alert(name: str) -> Alert:
    return normalize(json.loads((ALERTS / name).read_text()))


async def test_crash_between_decision_and_action_is_finished_on_redelivery(
    deployment: Deployment,
) -> None:
    settings = deployment.settings("endpoint-malware")
    async with deployment.open(settings) as c:
        crashed = await _decide_then_crash(c, _load_alert(DC01))
        assert {a.disposition for a in crashed.actions} == {
            Disposition.EXECUTED,
            Disposition.PROPOSED,
        }
        assert all(a.outcome is None for a in crashed.actions)
    assert deployment.journal() == []

    deployment.clock.advance(seconds=30)  # the process restarts; the alert is redelivered
    for _ in range(2):
        async with deployment.open(settings) as c:
            (outcome,) = await deployment.feed(c, DC01)
            assert outcome.correlation == "redelivered"
            assert outcome.decision is not None and outcome.decision.id == crashed.id
            assert all(a.outcome for a in outcome.decision.actions)

    assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]
    async with deployment.open(settings) as c:
        assert [p.request.target.value for p in await c.store.list_proposals()] == ["dc01"]
        stored = await c.store.get_decision(crashed.id)
        assert stored is not None and all(a.outcome for a in stored.actions)
        await _assert_chain_ok(c)


async def test_crash_after_the_vendor_call_is_verified_not_repeated(
    deployment: Deployment,
) -> None:
    """Died after the containment took effect but before the ledger recorded it."""
    settings = deployment.settings("endpoint-malware")
    async with deployment.open(settings) as c:
        crashed = await _decide_then_crash(c, _load_alert(FIN_042))
        isolate = actions_by_key(crashed)[("isolate_host", "ws-fin-042")]
        await c.store.claim_action(isolate, crashed.incident_id, c.clock())
        await c.gateway.call(
            "containment",
            "isolate_host",
            {"target": "ws-fin-042", "idempotency_key": isolate.idempotency_key},
        )
    assert deployment.journal_actions() == [("isolate_host", "ws-fin-042")]

    deployment.clock.advance(minutes=10)  # the orphaned claim is stale
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, FIN_042)
        acts = actions_by_key(outcome.decision)
        assert (acts[("isolate_host", "ws-fin-042")].outcome or "").startswith("already_executed")
        record = await c.store.get_action(isolate.idempotency_key)
        assert record is not None and record.status == "executed"
        await _assert_chain_ok(c)
    assert deployment.journal_actions() == [
        ("isolate_host", "ws-fin-042"),
        ("quarantine_file", QAKBOT),
    ]
    _no_duplicate_keys(deployment.journal())


async def test_crash_after_claim_redelivered_quickly_still_executes_eventually(
    deployment: Deployment,
) -> None:
    """Died after claiming the action, before calling the connector; restarted at once."""
    settings = deployment.settings("endpoint-malware")
    async with deployment.open(settings) as c:
        crashed = await _decide_then_crash(c, _load_alert(FIN_042))
        isolate = actions_by_key(crashed)[("isolate_host", "ws-fin-042")]
        await c.store.claim_action(isolate, crashed.incident_id, c.clock())

    deployment.clock.advance(seconds=20)  # restarted quickly: the claim still looks fresh
    async with deployment.open(settings) as c:
        await deployment.feed(c, FIN_042)
    deployment.clock.advance(minutes=10)  # redelivered again once the claim is stale
    async with deployment.open(settings) as c:
        await deployment.feed(c, FIN_042)
    assert ("isolate_host", "ws-fin-042") in deployment.journal_actions()


# --- the blast-radius budget when decisions interleave -----------------------------------


async def test_blast_radius_budget_holds_when_decisions_interleave(
    deployment: Deployment,
) -> None:
    """Two incidents decided before either acts: how concurrent alerts interleave.

    run_embedded with max_concurrent_alerts > 1 produces this interleaving depending on
    timing (ten C2 alerts under a budget of two gave three executions); here it is pinned:
    decide A, decide B, then act on both.
    """
    policy = {"blast_radius": {"block_ip": {"max_executions": 1, "window_seconds": 3600}}}
    settings = deployment.settings("network-c2", policy=policy)
    alerts = [normalize(json.loads(line)) for line in (ALERTS / C2_BURST).read_text().splitlines()]
    async with deployment.open(settings) as c:
        for alert in alerts[:2]:  # two incidents, both decided while nothing has executed yet
            decided = await _decide_then_crash(c, alert)
            assert decided.actions[0].disposition is Disposition.EXECUTED
        for alert in alerts[:2]:  # now both act
            outcome = await c.agent.handle(alert)
            assert outcome.correlation == "redelivered"
    assert deployment.journal_actions() == [("block_ip", "198.51.100.11")]


async def test_failed_containment_is_escalated_and_retried_on_redelivery(
    deployment: Deployment,
) -> None:
    """The EDR call fails: the analyst is told the threat is not contained; a retry fixes it."""
    settings = deployment.settings("endpoint-malware")
    deployment.journal_path.mkdir()  # the recording executor cannot append: every call fails
    async with deployment.open(settings) as c:
        decision = only(await deployment.feed(c, FIN_042))
    isolate = actions_by_key(decision)[("isolate_host", "ws-fin-042")]
    assert isolate.disposition is Disposition.EXECUTED
    assert (isolate.outcome or "").startswith("failed")
    (note,) = deployment.notifications()
    assert note["subject"].startswith("[ESCALATED]") and "FAILED isolate_host" in note["body"]

    deployment.journal_path.rmdir()  # the EDR is reachable again
    async with deployment.open(settings) as c:
        (again,) = await deployment.feed(c, FIN_042)
    assert again.correlation == "redelivered"
    assert ("isolate_host", "ws-fin-042") in deployment.journal_actions()
    retried = actions_by_key(again.decision)[("isolate_host", "ws-fin-042")]
    assert (retried.outcome or "").startswith("executed")


async def test_a_connector_configured_under_another_name_serves_the_playbooks(
    deployment: Deployment,
) -> None:
    """`connectors.<name>.use`: swap an implementation without editing playbooks."""
    settings = deployment.settings("endpoint-malware")
    connectors = dict(settings.connectors)
    # the playbook calls `asset_inventory`; the same installed class now serves it
    # under an alias, and a misnamed implementation is refused naming the key
    connectors["assets_v2"] = {**connectors["asset_inventory"], "use": "asset_inventory"}
    aliased = settings.model_copy(
        update={
            "connectors": connectors,
            "grants": {**settings.grants, "assets_v2": ["assets:read"]},
        }
    )
    async with deployment.open(aliased) as c:
        assert type(c.gateway.connectors["assets_v2"]).__name__ == "LocalAssetInventory"
        found = await c.gateway.call(
            "assets_v2", "lookup_asset", {"type": "host", "value": "ws-fin-042"}
        )
        assert found["found"] is True
    broken = settings.model_copy(
        update={"connectors": {**connectors, "assets_v2": {"use": "no-such-connector"}}}
    )
    with pytest.raises(ConfigError, match=r"connectors\.assets_v2\.use"):
        async with deployment.open(broken):
            pass


async def test_an_alerts_correlation_and_queries_are_written_with_its_decision(
    deployment: Deployment,
) -> None:
    async with deployment.open(deployment.settings("endpoint-malware")) as c:
        assert isinstance(c.audit, SQLiteAuditLog)
        before, (start, _) = c.audit.transactions, await c.audit.head()
        only(await deployment.feed(c, DC01))
        # Written before the outcome was reported, in order, the correlation's and the
        # queries' entries with the next awaited one: two writes fewer than entries.
        actions = [e.action for e in await c.audit.entries_after(start, limit=100)]
        assert actions[:2] == ["alert.correlate", "connector.queries"]
        assert "decision.make" in actions
        assert c.audit.transactions - before == len(actions) - 2
        await _assert_chain_ok(c)
