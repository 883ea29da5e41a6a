"""The Elasticsearch store keeps the SQLite store's semantics, on a real node.

Behaviours run on both stores (`store` is parametrised): SQLite is the
reference, so a difference between the two is a failure. The atomicity
tests (claims, budgets, optimistic concurrency) race real concurrent writers.
The audit log's tests race appenders through separate log instances, as
separate processes would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
from soc_agent.correlate import CorrelationConfig, Correlator
from soc_agent.models import (
    ActionRequest,
    ActionStatus,
    Alert,
    Approval,
    ApprovalVerdict,
    AuditEvent,
    AutonomyLevel,
    DeadLetter,
    Decision,
    Disposition,
    Entity,
    EntityType,
    Evidence,
    EvidenceStatus,
    Incident,
    Investigation,
    Proposal,
    ProposalStatus,
    RiskTier,
    Rule,
    ScoreContribution,
    Severity,
)
from soc_agent.models.ids import idempotency_key
from soc_agent.store import SQLiteStore
from soc_agent.store.base import DecisionState
from soc_agent.store.elasticsearch import ElasticsearchStore
from tests.infra.fixtures import needs
from tests.integration.store.counting import CountingClient

pytestmark = needs("elasticsearch")

AnyStore = SQLiteStore | ElasticsearchStore
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _alert(n: int, *, host: str = "ws-fin-042", at: datetime = T0) -> Alert:
    return Alert(
        id=f"crowdstrike:ldt:{n:04d}",
        format="crowdstrike",
        vendor="CrowdStrike",
        product="Falcon",
        source_id=f"ldt:{n:04d}",
        rule=Rule(id=f"cs-{n % 3}", name="Credential dumping via LSASS access"),
        title="Suspicious LSASS memory read",
        severity=Severity.HIGH,
        risk_score=82.5,
        created_at=at,
        received_at=at + timedelta(seconds=3),
        entities=[
            Entity(type=EntityType.HOST, value=host),
            Entity(type=EntityType.USER, value=f"CORP\\analyst{n}", role="actor"),
            Entity(type=EntityType.PROCESS, value="procdump64.exe -ma lsass.exe"),
        ],
        techniques=["T1003.001"],
        tactics=["credential-access"],
        original={
            "device": {"hostname": host.upper(), "os.version": "Windows 11"},
            "behaviors": [{"cmdline": "procdump64.exe -ma lsass.exe", "severity": 70}],
            "score": 82.5,
        },
    )


def _request(
    action: str = "isolate_host", target: str = "ws-fin-042", incident: str = "inc-1"
) -> ActionRequest:
    entity = Entity(type=EntityType.HOST, value=target)
    key = idempotency_key(incident, action, entity)
    return ActionRequest(
        id=f"act-{key[:16]}",
        action=action,
        target=entity,
        connector="containment",
        capability=action,
        args={"reason": "LSASS dump"},
        playbook_rule="contain",
        disposition=Disposition.EXECUTED,
        rule="threshold.execute",
        reason="score 95 >= execute_at 90",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=True,
        rollback_capability="release_host",
        revert_after_seconds=3600,
        risk=RiskTier.HIGH,
        idempotency_key=key,
    )


def _decision(did: str, incident: str, at: datetime, score: float = 91.0) -> Decision:
    return Decision(
        id=did,
        incident_id=incident,
        alert_ids=["crowdstrike:ldt:0001"],
        investigation_id="inv-1",
        playbook="credential-access",
        score=score,
        breakdown=[ScoreContribution(rule="severity", points=score, reason="high severity")],
        actions=[_request(incident=incident)],
        summary="LSASS read by procdump",
        created_at=at,
    )


def _proposal(
    pid: str,
    *,
    urgency: float = 50.0,
    expires: int = 60,
    status: ProposalStatus = ProposalStatus.PENDING,
) -> Proposal:
    return Proposal(
        id=pid,
        decision_id="dec-1",
        incident_id="inc-1",
        request=_request(),
        status=status,
        severity="high",
        urgency=urgency,
        created_at=T0,
        expires_at=T0 + timedelta(minutes=expires),
        updated_at=T0,
    )


# -- round trips -----------------------------------------------------------------------


async def test_ensure_indices_is_idempotent_and_mappings_strict(
    es: AsyncElasticsearch, es_store: ElasticsearchStore
) -> None:
    await es_store.ensure_indices()  # second time: no error, nothing replaced
    mapping = await es.indices.get_mapping(index=es_store.index("alerts"))
    props = mapping[es_store.index("alerts")]["mappings"]
    assert props["dynamic"] == "strict"
    assert props["properties"]["doc"] == {"type": "object", "enabled": False}
    assert props["properties"]["created_at"]["type"] == "date_nanos"
    assert sorted(await es.indices.get(index=f"{es_store.index('alerts')[:-7]}-*")) == sorted(
        es_store.indices()
    )


async def test_alert_round_trip_and_incident_id_is_kept(store: AnyStore) -> None:
    alert = _alert(1)
    await store.save_alert(alert, None)
    assert await store.get_alert(alert.id) == alert
    await store.save_alert(alert, "inc-1")
    await store.save_alert(alert.model_copy(update={"title": "changed"}), None)
    assert await store.get_alert(alert.id) == alert  # the first document stays
    assert await store.alerts_of("inc-1") == [alert]  # a later None keeps the incident
    assert await store.get_alert("missing") is None


async def test_alerts_of_sorted_by_event_time(store: AnyStore) -> None:
    late, early = _alert(1, at=T0 + timedelta(minutes=5)), _alert(2, at=T0)
    await store.save_alert(late, "inc-1")
    await store.save_alert(early, "inc-1")
    await store.save_alert(_alert(3), "inc-2")
    assert [a.id for a in await store.alerts_of("inc-1")] == [early.id, late.id]


def _incident(incident_id: str, minutes: int = 0) -> Incident:
    return Incident(
        id=incident_id,
        title="LSASS access",
        severity=Severity.HIGH,
        alert_ids=[f"a-{incident_id}"],
        entities=[Entity(type=EntityType.HOST, value="ws-fin-042")],
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=minutes),
    )


async def test_incidents_round_trip_and_list_newest_first(store: AnyStore) -> None:
    incidents = [_incident(f"inc-{i}", i) for i in (2, 3, 1)]
    for incident in incidents:
        await store.put_incident(incident)
    assert await store.get_incident("inc-3") == incidents[1]
    assert [i.id for i in await store.list_incidents()] == ["inc-3", "inc-2", "inc-1"]
    assert [i.id for i in await store.list_incidents(limit=1, offset=1)] == ["inc-2"]
    assert await store.get_incident("inc-9") is None


async def test_investigation_round_trip_and_replace(store: AnyStore) -> None:
    inv = Investigation(
        id="inv-1",
        incident_id="inc-1",
        playbook="credential-access",
        evidence=[
            Evidence(
                step="edr_host",
                connector="crowdstrike",
                capability="host_details",
                query={"host": "ws-fin-042"},
                status=EvidenceStatus.OK,
                result={"os": "Windows 11", "last_seen": "2026-11-20T08:59:00Z"},
                latency_ms=12.5,
                started_at=T0,
            )
        ],
        steps_used=1,
        started_at=T0,
    )
    await store.save_investigation(inv)
    assert await store.get_investigation("inv-1") == inv
    done = inv.model_copy(update={"finished_at": T0 + timedelta(seconds=4)})
    await store.save_investigation(done)
    assert await store.get_investigation("inv-1") == done


async def test_decisions_latest_and_list_order(store: AnyStore) -> None:
    first = _decision("dec-1", "inc-1", T0)
    tie = _decision("dec-2", "inc-1", T0 + timedelta(minutes=1))
    tie_later = _decision("dec-3", "inc-1", T0 + timedelta(minutes=1), score=40)
    other = _decision("dec-4", "inc-2", T0 + timedelta(hours=1))
    for d in (tie, first, tie_later, other):
        await store.save_decision(d)
    # Same created_at: the one inserted later wins (rowid in SQLite).
    assert await store.latest_decision("inc-1") == tie_later
    assert await store.latest_decision("inc-3") is None
    assert await store.get_decision("dec-2") == tie
    # Re-saving replaces the document but keeps its place in insertion order.
    await store.save_decision(tie.model_copy(update={"summary": "revised"}))
    assert [d.id for d in await store.list_decisions()] == ["dec-2", "dec-1", "dec-3", "dec-4"]
    assert (await store.list_decisions(limit=1))[0].summary == "revised"
    assert [d.id for d in await store.list_decisions(limit=2, offset=1)] == ["dec-1", "dec-3"]


async def test_a_re_saved_latest_decision_is_what_latest_returns(store: AnyStore) -> None:
    first = _decision("dec-1", "inc-1", T0)
    await store.save_decision(first)
    revised = first.model_copy(update={"summary": "revised"})
    await store.save_decision(revised)
    assert await store.latest_decision("inc-1") == revised
    assert await store.decision_state("dec-1", "inc-1") == DecisionState(revised, revised)
    assert await store.decision_state("dec-9", "inc-1") == DecisionState(None, revised)
    assert await store.decision_state("dec-9", "inc-9") == DecisionState(None, None)


async def test_decision_state_reads_the_incident_and_flags_asked_for(store: AnyStore) -> None:
    incident = _incident("inc-1")
    await store.put_incident(incident)
    await store.set_flag("kill_switch", True)
    await store.set_flag("autonomy", {"level": 2})
    state = await store.decision_state(
        "dec-1", "inc-1", with_incident=True, flags=["kill_switch", "autonomy", "unset"]
    )
    assert state == DecisionState(
        None, None, incident, {"kill_switch": True, "autonomy": {"level": 2}, "unset": None}
    )
    assert (await store.decision_state("dec-1", "inc-9", with_incident=True)).incident is None


async def test_workers_with_stale_pointer_versions_keep_the_latest_decision(
    es_store: ElasticsearchStore, es: AsyncElasticsearch, prefix: str
) -> None:
    """Each worker writes the pointer from the version it last saw; another worker's write
    makes that guess stale, and the pointer must still only move forward."""
    other = ElasticsearchStore(es, prefix=prefix, number_of_replicas=0)
    first = _decision("dec-1", "inc-1", T0)
    await es_store.save_decision(first)
    second = _decision("dec-2", "inc-1", T0 + timedelta(minutes=1))
    await other.save_decision(second)
    # es_store's remembered version is the one before `second`: its CAS is refused, it
    # reads again and, `first` being older, leaves `second` as the latest.
    await es_store.save_decision(first.model_copy(update={"summary": "acted"}))
    assert await other.latest_decision("inc-1") == second
    third = _decision("dec-3", "inc-1", T0 + timedelta(minutes=2))
    await es_store.save_decision(third)
    assert await other.latest_decision("inc-1") == third
    acted = third.model_copy(update={"summary": "acted"})
    await other.save_decision(acted)
    assert await es_store.latest_decision("inc-1") == acted
    # A re-save by another process keeps the decision's original insertion stamp, in the
    # decision and in the pointer both (it orders decisions made at the same time).
    stored = await es.get(index=es_store.index("decisions"), id="dec-3")
    pointer = await es.get(index=es_store.index("decisions-latest"), id="inc-1")
    assert pointer["_source"]["inserted"] == stored["_source"]["inserted"]
    assert (await es_store.get_decision("dec-1")).summary == "acted"  # type: ignore[union-attr]


async def test_a_pointer_written_before_it_carried_its_decision_still_resolves(
    es_store: ElasticsearchStore, es: AsyncElasticsearch
) -> None:
    decision = _decision("dec-1", "inc-1", T0)
    await es_store.save_decision(decision)
    await es.index(
        index=es_store.index("decisions-latest"),
        id="inc-1",
        document={
            "incident_id": "inc-1",
            "decision_id": "dec-1",
            "created_at": "2026-11-20T09:00:00.000000Z",
            "inserted": 1,
        },
    )
    assert await es_store.latest_decision("inc-1") == decision
    later = _decision("dec-2", "inc-1", T0 + timedelta(minutes=1))
    await es_store.save_decision(later)
    assert await es_store.decision_state("dec-1", "inc-1") == DecisionState(decision, later)


async def test_decision_state_reads_ahead_the_standing_of_the_actions_asked_for_before(
    es_store: ElasticsearchStore,
    elasticsearch_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The policy's ledger read for an action the incident's last decision asked for
    comes with the decision's state: no request of its own, the same answer."""
    client = CountingClient(elasticsearch_url, request_timeout=30)
    store = ElasticsearchStore(client, prefix=prefix, number_of_replicas=0)
    try:
        decision = _decision("dec-1", "inc-1", T0)
        await store.save_decision(decision)
        request = decision.actions[0]
        await es_store.claim_action(request, "inc-1", T0, budget=(5, T0))
        await es_store.claim_action(_request(target="ws-2"), "inc-9", T0, budget=(5, T0))
        client.requests.clear()
        await store.decision_state("dec-2", "inc-1", standing=True)
        standing = await store.action_standing(request.idempotency_key, request.action, T0)
        assert client.requests == [("POST", "/_mget")]
        held, used = standing
        assert (held is not None and held.target, used) == ("ws-fin-042", 2)
        assert standing == await es_store.action_standing(
            request.idempotency_key, request.action, T0
        )
        # Used once; and never when older than the freshness bound, nor unasked.
        await store.action_standing(request.idempotency_key, request.action, T0)
        assert client.requests == [("POST", "/_mget")] * 2
        monkeypatch.setattr("soc_agent.store.elasticsearch._AHEAD_FRESH_SECONDS", 0.0)
        await store.decision_state("dec-2", "inc-1", standing=True)
        await store.action_standing(request.idempotency_key, request.action, T0)
        await store.decision_state("dec-2", "inc-1")
        await store.action_standing(request.idempotency_key, request.action, T0)
        assert client.requests == [("POST", "/_mget")] * 6
    finally:
        await client.close()


# -- proposals ---------------------------------------------------------------------------


async def test_proposal_create_conflict(store: AnyStore) -> None:
    p = _proposal("prop-1")
    assert await store.save_proposal(p) is True
    assert await store.save_proposal(p.model_copy(update={"urgency": 99.0})) is False
    assert await store.get_proposal("prop-1") == p


async def test_proposal_optimistic_concurrency(store: AnyStore) -> None:
    p = _proposal("prop-1")
    await store.save_proposal(p)
    approval = Approval(analyst="alice", verdict="approve", at=T0 + timedelta(minutes=1))
    approved = p.model_copy(update={"status": ProposalStatus.APPROVED, "approvals": [approval]})
    assert await store.update_proposal(approved, expected_version=1) is True
    stored = await store.get_proposal("prop-1")
    assert stored == approved.model_copy(update={"version": 2})
    # A stale writer loses.
    assert await store.update_proposal(p, expected_version=1) is False
    assert await store.update_proposal(_proposal("nope"), expected_version=1) is False
    assert await store.list_proposals(status=ProposalStatus.APPROVED) == [stored]
    assert await store.list_proposals(status=ProposalStatus.PENDING) == []


async def test_concurrent_updates_with_same_version_exactly_one_wins(store: AnyStore) -> None:
    await store.save_proposal(_proposal("prop-1"))
    verdicts = [
        _proposal(
            "prop-1", status=ProposalStatus.APPROVED if i % 2 else ProposalStatus.REJECTED
        ).model_copy(
            update={
                "approvals": [
                    Approval(analyst=f"analyst{i}", verdict=ApprovalVerdict.APPROVE, at=T0)
                ]
            }
        )
        for i in range(8)
    ]
    results = await asyncio.gather(
        *(store.update_proposal(v, expected_version=1) for v in verdicts)
    )
    assert results.count(True) == 1
    winner = verdicts[results.index(True)]
    assert await store.get_proposal("prop-1") == winner.model_copy(update={"version": 2})


async def test_list_proposals_sorted_by_urgency_then_expiry(store: AnyStore) -> None:
    for pid, urgency, expires in [("a", 10, 5), ("b", 90, 30), ("c", 90, 10), ("d", 50, 1)]:
        await store.save_proposal(_proposal(pid, urgency=urgency, expires=expires))
    assert [p.id for p in await store.list_proposals()] == ["c", "b", "d", "a"]
    assert [p.id for p in await store.list_proposals(limit=2, offset=1)] == ["b", "d"]


# -- action ledger -----------------------------------------------------------------------


async def test_claim_action_exactly_once_under_20_concurrent_claimers(store: AnyStore) -> None:
    req = _request()
    results = await asyncio.gather(
        *(
            store.claim_action(req, "inc-1", T0, budget=(5, T0 - timedelta(hours=1)))
            for _ in range(20)
        )
    )
    assert [r.claimed for r in results].count(True) == 1
    assert not any(r.over_budget for r in results)
    assert {r.record.idempotency_key for r in results if r.record} == {req.idempotency_key}
    record = await store.get_action(req.idempotency_key)
    assert record is not None
    assert (record.status, record.attempts, record.request) == ("claimed", 1, req)
    assert await store.count_executions("isolate_host", T0) == 1


async def test_budget_never_exceeded_under_concurrency(store: AnyStore) -> None:
    since = T0 - timedelta(hours=1)
    requests = [_request(target=f"ws-fin-{i:03d}") for i in range(10)]
    results = await asyncio.gather(
        *(store.claim_action(r, "inc-1", T0, budget=(3, since)) for r in requests)
    )
    assert [r.claimed for r in results].count(True) == 3
    assert [r.over_budget for r in results].count(True) == 7
    assert all(r.record is None for r in results if r.over_budget)
    assert await store.count_executions("isolate_host", since) == 3
    # Another action has its own budget.
    other = await store.claim_action(_request("block_ip"), "inc-1", T0, budget=(3, since))
    assert other.claimed


async def test_budget_slides_and_failed_claims_free_their_slot(store: AnyStore) -> None:
    window = timedelta(hours=1)
    a, b, c = (_request(target=t) for t in ("ws-a", "ws-b", "ws-c"))
    assert (await store.claim_action(a, "inc-1", T0, budget=(2, T0 - window))).claimed
    later = T0 + timedelta(minutes=30)
    assert (await store.claim_action(b, "inc-1", later, budget=(2, later - window))).claimed
    assert (await store.claim_action(c, "inc-1", later, budget=(2, later - window))).over_budget
    # a fails: it no longer counts.
    await store.finish_action(
        a.idempotency_key,
        status=ActionStatus.FAILED,
        result=None,
        error="timeout",
        now=later,
        revert_at=None,
    )
    assert await store.count_executions("isolate_host", T0 - window) == 1
    assert (await store.claim_action(c, "inc-1", later, budget=(2, later - window))).claimed
    # Retrying a counts again (from now), without a budget check, as in SQLite.
    await store.retry_claim(a.idempotency_key, later)
    retried = await store.get_action(a.idempotency_key)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.claimed_at) == ("claimed", 2, later)
    assert await store.count_executions("isolate_host", later) == 3
    # Past the window of b and c's claims, the budget is free again.
    much_later = later + window + timedelta(seconds=1)
    d = _request(target="ws-d")
    assert (
        await store.claim_action(d, "inc-1", much_later, budget=(1, much_later - window))
    ).claimed


async def test_claim_without_budget_still_counts_against_later_budgets(store: AnyStore) -> None:
    since = T0 - timedelta(hours=1)
    assert (await store.claim_action(_request(target="ws-a"), "inc-1", T0)).claimed
    result = await store.claim_action(_request(target="ws-b"), "inc-1", T0, budget=(1, since))
    assert result.over_budget


async def test_a_rollback_is_claimed_once_released_on_failure_and_taken_over_when_stale(
    store: AnyStore,
) -> None:
    request = _request(target="ws-r")
    key = request.idempotency_key
    await store.claim_action(request, "inc-1", T0)
    later = T0 + timedelta(minutes=1)
    await store.finish_action(
        key, status=ActionStatus.EXECUTED, result={}, error=None, now=later, revert_at=None
    )
    stale_before = later - timedelta(minutes=5)
    won = await asyncio.gather(
        *(store.claim_rollback(key, later, stale_before=stale_before) for _ in range(8))
    )
    assert sum(won) == 1
    record = await store.get_action(key)
    assert record is not None and record.status is ActionStatus.ROLLING_BACK
    assert record.rollback_claimed_at == later

    await store.release_rollback(key)  # the inverse failed: executed again, claimable
    record = await store.get_action(key)
    assert record is not None and record.status is ActionStatus.EXECUTED
    assert await store.claim_rollback(key, later, stale_before=stale_before)

    # A claim cut off by a crash is taken over only once it is stale.
    assert not await store.claim_rollback(key, later, stale_before=later - timedelta(minutes=5))
    much_later = later + timedelta(minutes=10)
    assert await store.claim_rollback(
        key, much_later, stale_before=much_later - timedelta(minutes=5)
    )


async def test_finish_action_due_reverts_and_lookup_by_action_id(store: AnyStore) -> None:
    reqs = [_request(target=f"ws-{i}") for i in range(4)]
    for r in reqs:
        await store.claim_action(r, "inc-1", T0)
    done = T0 + timedelta(minutes=1)
    reverts = [T0 + timedelta(hours=2), T0 + timedelta(hours=1), None, T0 + timedelta(minutes=30)]
    statuses = [ActionStatus.EXECUTED] * 3 + [ActionStatus.ROLLED_BACK]
    for r, revert, status in zip(reqs, reverts, statuses, strict=True):
        await store.finish_action(
            r.idempotency_key,
            status=status,
            result={"contained": True, "device_id": r.target.value},
            error=None,
            now=done,
            revert_at=revert,
        )
    due = await store.due_reverts(T0 + timedelta(hours=2))
    assert [d.target for d in due] == ["ws-1", "ws-0"]
    assert await store.due_reverts(T0 + timedelta(minutes=59)) == []
    record = await store.get_action(reqs[0].id)  # by action id
    assert record is not None
    assert record.idempotency_key == reqs[0].idempotency_key
    assert (record.status, record.result, record.executed_at) == (
        "executed",
        {"contained": True, "device_id": "ws-0"},
        done,
    )
    assert [a.target for a in await store.list_actions(limit=2, offset=1)] == ["ws-1", "ws-2"]
    assert await store.get_action("missing") is None


async def test_count_executions(store: AnyStore) -> None:
    for i, minutes in enumerate((0, 10, 20)):
        await store.claim_action(
            _request(target=f"ws-{i}"), "inc-1", T0 + timedelta(minutes=minutes)
        )
    await store.claim_action(_request("block_ip", target="ws-9"), "inc-1", T0)
    await store.finish_action(
        _request(target="ws-2").idempotency_key,
        status=ActionStatus.FAILED,
        result=None,
        error="denied",
        now=T0,
        revert_at=None,
    )
    assert await store.count_executions("isolate_host", T0) == 2
    assert await store.count_executions("isolate_host", T0 + timedelta(minutes=10)) == 1
    assert await store.count_executions("block_ip", T0) == 1
    assert await store.count_executions("disable_user", T0) == 0
    # The policy's read: the key's ledger row and the action's claims, together.
    key = _request(target="ws-1").idempotency_key
    held, used = await store.action_standing(key, "isolate_host", T0 + timedelta(minutes=10))
    assert (held is not None and held.target, used) == ("ws-1", 1)
    assert await store.action_standing("no-such-key", "disable_user", T0) == (None, 0)


async def test_actions_and_proposals_read_together_in_order(store: AnyStore) -> None:
    executed, other = _request(target="ws-1"), _request(target="ws-2")
    await store.claim_action(executed, "inc-1", T0)
    await store.claim_action(other, "inc-1", T0)
    await store.save_proposal(_proposal("prop-2"))
    records, proposals = await store.actions_and_proposals(
        [other.idempotency_key, "no-such-key", executed.idempotency_key],
        ["prop-2", "prop-9"],
    )
    assert [r.target if r else None for r in records] == ["ws-2", None, "ws-1"]
    assert [p.id if p else None for p in proposals] == ["prop-2", None]
    assert await store.actions_and_proposals([], []) == ([], [])


# -- dead letters, flags, correlation ----------------------------------------------------


async def test_dead_letters_keep_exact_bytes(store: AnyStore) -> None:
    raw = b'\x00\xff{"not": json\n\x80\xfe' + bytes(range(256))
    letters = [
        DeadLetter(
            id="dl-2",
            reason="unparseable JSON at byte 3",
            source="kafka:alerts-raw/2@118",
            original=raw,
            headers={"content-type": "application/json", "x-vendor": "crowdstrike"},
            format_hint="crowdstrike",
            received_at=T0 + timedelta(seconds=5),
        ),
        DeadLetter(
            id="dl-1", reason="empty", source="file:alerts.jsonl", original=b"", received_at=T0
        ),
    ]
    for letter in letters:
        await store.save_dead_letter(letter)
    await store.save_dead_letter(letters[0].model_copy(update={"original": b"other"}))  # ignored
    assert await store.list_dead_letters() == [letters[1], letters[0]]
    assert await store.list_dead_letters(limit=1) == [letters[1]]


@pytest.mark.parametrize(
    "value",
    [True, False, 0, 3.5, "paused by alice", ["isolate_host", "block_ip"], {"level": 2}],
)
async def test_flags_round_trip_any_json(store: AnyStore, value: Any) -> None:
    assert await store.get_flag("kill_switch") is None
    await store.set_flag("kill_switch", value)
    assert await store.get_flag("kill_switch") == value
    await store.set_flag("kill_switch", None)
    assert await store.get_flag("kill_switch") is None


async def test_flags_are_read_together_in_the_order_asked(store: AnyStore) -> None:
    long_name = "export." + "x" * 600  # longer than an ES _id may be
    await store.set_flag("agent_autonomy", 2)
    await store.set_flag(long_name, {"cursor": 7})
    got = await store.get_flags(["kill_switch", long_name, "agent_autonomy"])
    assert list(got.items()) == [
        ("kill_switch", None),
        (long_name, {"cursor": 7}),
        ("agent_autonomy", 2),
    ]
    assert await store.get_flags([]) == {}


async def test_correlation_state_methods(store: AnyStore) -> None:
    long_key = "url:https://cdn.example.com/" + "a" * 2000  # longer than an ES _id may be
    assert await store.find_by_entity("host:ws-fin-042") is None
    await store.index_entity("host:ws-fin-042", "inc-1")
    await store.index_entity(long_key, "inc-1")
    await store.index_entity("host:ws-fin-042", "inc-2")  # the newest incident takes it over
    assert await store.find_by_entity("host:ws-fin-042") == "inc-2"
    assert await store.find_by_entity(long_key) == "inc-1"
    assert await store.get_fingerprint("fp-1") is None
    seen = datetime(2026, 11, 20, 9, 0, 1, 123456, tzinfo=UTC)
    await store.put_fingerprint("fp-1", "inc-1", seen)
    assert await store.get_fingerprint("fp-1") == ("inc-1", seen)
    assert await store.get_alert_incident("a1") is None
    await store.put_alert_incident("a1", "inc-1")
    assert await store.get_alert_incident("a1") == "inc-1"


async def test_correlator_groups_related_alerts(store: AnyStore) -> None:
    correlator = Correlator(store, CorrelationConfig())
    first = await correlator.correlate(_alert(1))
    second = await correlator.correlate(_alert(2, at=T0 + timedelta(minutes=10)))
    unrelated = await correlator.correlate(_alert(3, host="ws-hr-007", at=T0 + timedelta(hours=5)))
    again = await correlator.correlate(_alert(2, at=T0 + timedelta(minutes=10)))
    assert (first.outcome, second.outcome, unrelated.outcome, again.outcome) == (
        "new",
        "grouped",
        "new",
        "redelivered",
    )
    assert second.incident.id == first.incident.id != unrelated.incident.id
    stored = await store.get_incident(first.incident.id)
    assert stored is not None
    assert stored.alert_ids == [_alert(1).id, _alert(2).id]
    assert stored.last_seen == T0 + timedelta(minutes=10)
    assert await store.find_by_entity("host:ws-fin-042") == first.incident.id


async def test_the_concurrent_correlation_saves_the_alert_where_it_placed_it(
    es_store: ElasticsearchStore,
) -> None:
    from soc_agent.correlate.concurrent import ConcurrentCorrelator
    from soc_agent.correlate.turns import KeyTurns

    correlator = ConcurrentCorrelator(
        es_store.correlation_view, CorrelationConfig(), key_locks=KeyTurns()
    )
    alert = _alert(1)
    placed = await correlator.correlate(alert)
    # Saved with the correlation's index writes, before the agent asks.
    assert await es_store.alerts_of(placed.incident.id) == [alert]
    await es_store.save_alert(alert, placed.incident.id)
    assert await es_store.alerts_of(placed.incident.id) == [alert]
    # Saved again elsewhere (the agent's own call, another incident): written.
    await es_store.save_alert(alert, "inc-other")
    assert await es_store.alerts_of("inc-other") == [alert]


async def test_saving_an_alert_with_its_incident_is_one_request_stored_or_not(
    es_store: ElasticsearchStore, elasticsearch_url: str, prefix: str
) -> None:
    """A redelivered alert (its document stored by the delivery before) is saved with one
    request, as a first one is: the document is kept and gains the incident."""
    client = CountingClient(elasticsearch_url, request_timeout=30)
    store = ElasticsearchStore(client, prefix=prefix, number_of_replicas=0)
    try:
        first, again = _alert(1), _alert(2)
        await es_store.save_alert(again, None)
        await store.save_alert(first, "inc-1")
        await store.save_alert(again.model_copy(update={"title": "changed"}), "inc-1")
        assert len(client.requests) == 2
        stored = sorted(await es_store.alerts_of("inc-1"), key=lambda a: a.id)
        assert stored == [first, again]  # `again` keeps its first title
    finally:
        await client.close()


# -- audit log ---------------------------------------------------------------------------


def _event(i: int, actor: str = "soc-agent") -> AuditEvent:
    return AuditEvent(
        actor=actor,
        action="action.executed" if i % 2 else "proposal.approved",
        subject=f"inc-{i % 3}",
        reason="score 95 >= execute_at 90",
        outcome="ok",
        details={"target": f"ws-{i}", "score": 95.5, "rules": ["severity", "intel"]},
        at=T0 + timedelta(seconds=i),
    )


async def test_audit_concurrent_appenders_keep_one_gapless_chain(
    es: AsyncElasticsearch, audit_log: ElasticsearchAuditLog
) -> None:
    # Three log instances on one index stand for three worker processes.
    others = [ElasticsearchAuditLog(es, index=audit_log.index) for _ in range(2)]
    logs = [audit_log, *others]
    appended = await asyncio.gather(
        *(logs[i % 3].append(_event(i, actor=f"worker-{i % 3}")) for i in range(30))
    )
    assert sorted(e.seq for e in appended if e.seq is not None) == list(range(1, 31))
    result = await audit_log.verify()
    assert (result.ok, result.count, result.problem) == (True, 30, None)
    assert await audit_log.head() == (30, result.head)
    assert await others[0].head() == (30, result.head)
    entries = await audit_log.list(limit=100)
    assert entries == sorted(appended, key=lambda e: e.seq or 0)
    # Appends after a restart continue the chain.
    fresh = ElasticsearchAuditLog(es, index=audit_log.index)
    nxt = await fresh.append(_event(99))
    assert (nxt.seq, nxt.prev_hash) == (31, result.head)
    assert (await audit_log.verify(expected_count=30, expected_head=result.head)).ok


async def test_a_shared_chain_appender_behind_others_reads_ahead_instead_of_racing(
    audit_log: ElasticsearchAuditLog, elasticsearch_url: str
) -> None:
    """A worker's last append to the shared chain is several entries behind (the others
    anchored meanwhile): it reads the entries after it in one `_mget` and creates the
    next one, instead of a refused create and a read for each entry it missed."""
    client = CountingClient(elasticsearch_url, request_timeout=30)
    behind = ElasticsearchAuditLog(client, index=audit_log.index)
    try:
        await behind.append(_event(0))
        for i in range(1, 6):
            await audit_log.append(_event(i, actor="worker-2"))
        client.requests.clear()
        entry = await behind.append(_event(6))
        assert entry.seq == 7
        assert [m for m, _ in client.requests] == ["POST", "PUT"], client.requests
        assert (await audit_log.verify()).ok
    finally:
        await client.close()


async def test_audit_list_filters_and_head(audit_log: ElasticsearchAuditLog) -> None:
    assert await audit_log.head() == (0, "0" * 64)
    assert (await audit_log.verify()).ok
    for i in range(6):
        await audit_log.append(_event(i))
    assert [e.seq for e in await audit_log.list(subject="inc-1")] == [2, 5]
    assert [e.seq for e in await audit_log.list(action_prefix="proposal.")] == [1, 3, 5]
    assert [e.seq for e in await audit_log.list(action_prefix="Proposal.")] == []
    assert [e.seq for e in await audit_log.list(limit=2, offset=1, newest_first=True)] == [5, 4]


async def test_audit_tampered_entry_fails_verify_naming_it(
    es: AsyncElasticsearch, audit_log: ElasticsearchAuditLog
) -> None:
    for i in range(5):
        await audit_log.append(_event(i))
    await es.update(index=audit_log.index, id="3", doc={"reason": "nothing to see"}, refresh=True)
    result = await audit_log.verify()
    assert (result.ok, result.first_bad_seq, result.count) == (False, 3, 2)
    assert result.problem is not None
    assert "entry 3 was modified" in result.problem


async def test_audit_deleted_entry_fails_verify(
    es: AsyncElasticsearch, audit_log: ElasticsearchAuditLog
) -> None:
    for i in range(4):
        await audit_log.append(_event(i))
    await es.delete(index=audit_log.index, id="2", refresh=True)
    result = await audit_log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem is not None
    assert "missing" in result.problem


async def test_audit_hmac_key_is_required_to_verify(
    es: AsyncElasticsearch, audit_log: ElasticsearchAuditLog
) -> None:
    keyed = ElasticsearchAuditLog(es, index=audit_log.index, key=b"k" * 32)
    await keyed.append(_event(1))
    assert (await keyed.verify()).ok
    assert (await audit_log.verify()).first_bad_seq == 1


async def test_writes_never_wait_for_a_refresh_and_searches_still_see_them(
    slow_es_store: ElasticsearchStore,
) -> None:
    """With a 30 s refresh interval, a `wait_for` write would block for up to 30 s."""
    import time

    slow = slow_es_store
    alert = _alert(1)
    request = _request()
    started = time.perf_counter()
    await slow.save_alert(alert, "inc-1")
    await slow.save_decision(_decision("dec-1", "inc-1", T0))
    assert await slow.save_proposal(_proposal("prop-1"))
    assert (await slow.claim_action(request, "inc-1", T0, budget=(3, T0))).claimed
    await slow.finish_action(
        request.idempotency_key,
        status=ActionStatus.EXECUTED,
        result={},
        error=None,
        now=T0,
        revert_at=T0,
    )
    assert time.perf_counter() - started < 10
    # Every search refreshes its index first: read-your-writes across the store.
    assert await slow.alerts_of("inc-1") == [alert]
    assert [d.id for d in await slow.list_decisions()] == ["dec-1"]
    assert [p.id for p in await slow.list_proposals()] == ["prop-1"]
    assert await slow.count_executions("isolate_host", T0) == 1
    assert [r.idempotency_key for r in await slow.due_reverts(T0)] == [request.idempotency_key]
