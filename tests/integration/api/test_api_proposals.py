"""The proposals API over real HTTP: queue, evidence, approve/reject, four-eyes, expiry, races."""

from __future__ import annotations

import asyncio

import httpx

from soc_agent.models import Approval, ProposalStatus, Role
from tests.integration.api.conftest import BEACON, Api, open_api, running_server
from tests.integration.conftest import Deployment


def _executions(api: Api | Deployment) -> list[tuple[str, str]]:
    deployment = api.deployment if isinstance(api, Api) else api
    return deployment.journal_actions()


async def test_queue_sorted_by_urgency_filtered_and_paginated(api: Api) -> None:
    r = await api.get("/api/v1/proposals")
    assert r.status_code == 200
    items = r.json()["items"]
    assert {(p["request"]["action"], p["status"]) for p in items} == {
        ("isolate_host", "pending"),
        ("quarantine_file", "pending"),
    }
    urgencies = [p["urgency"] for p in items]
    assert urgencies == sorted(urgencies, reverse=True)

    first = await api.get("/api/v1/proposals", params={"limit": 1})
    second = await api.get("/api/v1/proposals", params={"limit": 1, "offset": 1})
    assert first.json()["next_offset"] == 1
    assert [p["id"] for p in first.json()["items"] + second.json()["items"]] == [
        p["id"] for p in items
    ]
    last = await api.get("/api/v1/proposals", params={"limit": 1, "offset": 2})
    assert last.json() == {"items": [], "limit": 1, "offset": 2, "next_offset": None}

    assert (await api.get("/api/v1/proposals", params={"status": "executed"})).json()["items"] == []
    pending = await api.get("/api/v1/proposals", params={"status": "pending"})
    assert len(pending.json()["items"]) == 2
    bad = await api.get("/api/v1/proposals", params={"status": "bogus"})
    assert bad.status_code == 422


async def test_proposal_detail_carries_alert_evidence_score_rules_and_blast_radius(
    api: Api,
) -> None:
    proposal = await api.proposal("isolate_host")
    r = await api.get(f"/api/v1/proposals/{proposal.id}")
    assert r.status_code == 200
    d = r.json()
    assert d["proposal"]["request"]["target"]["value"] == "ws-eng-007"
    assert d["proposal"]["request"]["playbook_rule"] == "isolate-host"
    assert d["proposal"]["request"]["rule"] == "autonomy.collaborator"
    assert d["proposal"]["request"]["required_approvals"] == 2
    assert d["proposal"]["approvals_needed"] == 2
    assert d["proposal"]["request"]["blast_radius"]["criticality"] in {
        "low",
        "medium",
        "high",
        "critical",
    }
    assert d["decision"]["playbook"] == "endpoint-malware"
    assert {b["rule"] for b in d["decision"]["breakdown"]} >= {"base", "hash-malicious"}
    assert d["decision"]["score"] == 90
    steps = {e["step"]: e for e in d["investigation"]["evidence"]}
    assert set(steps) == {"host_asset", "hash_intel"}
    assert all(e["status"] == "ok" and e["latency_ms"] >= 0 for e in steps.values())
    assert steps["host_asset"]["result"]["found"] is True
    assert [a["title"] for a in d["alerts"]] and d["alerts"][0]["severity"] == "high"
    assert d["incident"]["id"] == proposal.incident_id
    assert [e["action"] for e in d["audit"]] == ["proposal.create"]
    assert d["authorisation"] == {"required_role": "senior", "may_decide": False}  # vic
    sam = await api.get(f"/api/v1/proposals/{proposal.id}", who="sam")
    assert sam.json()["authorisation"] == {"required_role": "senior", "may_decide": True}


async def test_analyst_approval_executes_once_and_is_audited_with_identity(api: Api) -> None:
    proposal = await api.proposal("quarantine_file")
    r = await api.post(
        f"/api/v1/proposals/{proposal.id}/approve", "alice", json={"comment": "known beacon"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["proposal"]["status"] == "executed"
    assert "executed" in r.json()["message"]
    assert _executions(api) == [("quarantine_file", BEACON)]

    again = await api.post(f"/api/v1/proposals/{proposal.id}/approve", "amy")
    assert again.status_code == 409
    assert "not pending" in again.json()["detail"]
    assert _executions(api) == [("quarantine_file", BEACON)]

    trail = await api.audit(subject=proposal.id)
    approve = next(e for e in trail if e["action"] == "proposal.approve")
    assert (approve["actor"], approve["reason"], approve["outcome"]) == (
        "token:alice",
        "known beacon",
        "approved",
    )
    executed = await api.audit(action="action.execute")
    assert [e["details"]["approved_by"] for e in executed] == [["token:alice"]]


async def test_approve_without_a_body_and_reject_with_one(api: Api) -> None:
    quarantine = await api.proposal("quarantine_file")
    r = await api.post(f"/api/v1/proposals/{quarantine.id}/reject", "alice", json=None)
    assert r.status_code == 200, r.text
    assert r.json()["proposal"]["status"] == "rejected"
    late = await api.post(f"/api/v1/proposals/{quarantine.id}/approve", "amy")
    assert late.status_code == 409
    isolate = await api.proposal("isolate_host")
    r = await api.post(
        f"/api/v1/proposals/{isolate.id}/reject", "sam", json={"comment": "lab host"}
    )
    assert r.status_code == 200
    assert _executions(api) == []
    (rejected,) = [e for e in await api.audit(subject=isolate.id) if e["action"].endswith("reject")]
    assert (rejected["actor"], rejected["reason"]) == ("token:sam", "lab host")


async def test_four_eyes_needs_two_distinct_seniors(api: Api) -> None:
    proposal = await api.proposal("isolate_host")
    path = f"/api/v1/proposals/{proposal.id}/approve"
    analyst = await api.post(path, "alice")
    assert analyst.status_code == 403
    assert "senior" in analyst.json()["detail"]

    first = await api.post(path, "sam", json={"comment": "isolate"})
    assert first.status_code == 200
    assert first.json()["proposal"]["status"] == "pending"
    assert "needs 1 more approver" in first.json()["message"]
    assert _executions(api) == []

    twice = await api.post(path, "sam")
    assert twice.status_code == 409
    assert "already approved" in twice.json()["detail"]
    assert _executions(api) == []

    second = await api.post(path, "sue")
    assert second.status_code == 200
    assert second.json()["proposal"]["status"] == "executed"
    assert second.json()["proposal"]["approvers"] == ["token:sam", "token:sue"]
    assert _executions(api) == [("isolate_host", "ws-eng-007")]
    executed = await api.audit(action="action.execute")
    assert [e["details"]["approved_by"] for e in executed] == [["token:sam", "token:sue"]]


async def test_admin_may_approve_what_a_senior_may(api: Api) -> None:
    proposal = await api.proposal("isolate_host")
    path = f"/api/v1/proposals/{proposal.id}/approve"
    assert (await api.post(path, "ada")).status_code == 200
    assert (await api.post(path, "sue")).json()["proposal"]["status"] == "executed"


async def test_expired_proposal_is_never_executed_and_is_escalated(api: Api) -> None:
    proposal = await api.proposal("quarantine_file")
    api.deployment.clock.advance(hours=1, seconds=1)
    r = await api.post(f"/api/v1/proposals/{proposal.id}/approve", "alice")
    assert r.status_code == 409
    assert "expired" in r.json()["detail"]
    assert _executions(api) == []
    detail = (await api.get(f"/api/v1/proposals/{proposal.id}")).json()
    assert detail["proposal"]["status"] == "expired"
    expire = next(e for e in detail["audit"] if e["action"] == "proposal.expire")
    assert expire["outcome"] == "escalated"
    assert detail["authorisation"]["may_decide"] is False


async def test_server_expires_overdue_proposals_without_anyone_touching_them(
    deployment: Deployment,
) -> None:
    settings, tokens = await open_api(deployment, api={"expiry_sweep_seconds": 0.05})
    deployment.clock.advance(hours=2)
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"Authorization": f"Bearer {tokens['vic']}"}
            for _ in range(100):
                r = await client.get(
                    url + "/api/v1/proposals", params={"status": "expired"}, headers=headers
                )
                if len(r.json()["items"]) == 2:
                    break
                await asyncio.sleep(0.05)
            assert {p["status"] for p in r.json()["items"]} == {"expired"}
            assert len(r.json()["items"]) == 2
    assert deployment.journal() == []


async def test_concurrent_approvals_execute_once_and_the_others_get_409(api: Api) -> None:
    proposal = await api.proposal("quarantine_file")
    path = f"/api/v1/proposals/{proposal.id}/approve"
    results = await asyncio.gather(
        *(api.post(path, who, json={"comment": who}) for who in ("alice", "amy", "andy", "sam"))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409, 409, 409], [r.text for r in results]
    for r in results:
        if r.status_code == 409:
            assert r.json()["detail"]
    assert _executions(api) == [("quarantine_file", BEACON)]
    executed = await api.audit(action="action.execute")
    assert len(executed) == 1
    approvals = [e for e in await api.audit(subject=proposal.id) if e["action"].endswith("approve")]
    assert len(approvals) == 1


async def test_configured_roles_decide_who_approves_which_risk(deployment: Deployment) -> None:
    settings, tokens = await open_api(
        deployment, api={"approve_roles": {"medium": "senior", "high": "admin"}}
    )
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            api = Api(url, tokens, deployment, settings, client)
            quarantine = await api.proposal("quarantine_file")
            isolate = await api.proposal("isolate_host")
            assert (
                await api.post(f"/api/v1/proposals/{quarantine.id}/approve", "alice")
            ).status_code == 403
            assert (
                await api.post(f"/api/v1/proposals/{isolate.id}/approve", "sam")
            ).status_code == 403
            ok = await api.post(f"/api/v1/proposals/{quarantine.id}/approve", "sam")
            assert ok.status_code == 200
            assert (
                await api.post(f"/api/v1/proposals/{isolate.id}/approve", "ada")
            ).status_code == 200
            me = await api.get("/api/v1/me", who="sam")
            assert me.json()["may_approve"] == ["low", "medium"]
            assert Role.SENIOR.value == me.json()["role"]


async def test_server_resumes_an_approval_a_crash_cut_off(deployment: Deployment) -> None:
    """An approval marked but never executed (the API process died) is carried out once."""
    settings, tokens = await open_api(deployment, api={"expiry_sweep_seconds": 0.05})
    async with deployment.open(settings) as c:
        (proposal,) = [
            p for p in await c.store.list_proposals() if p.request.action == "quarantine_file"
        ]
        crashed = proposal.model_copy(
            update={
                "status": ProposalStatus.APPROVED,
                "approvals": [Approval(analyst="alice", verdict="approve", at=c.clock())],
                "updated_at": c.clock(),
            }
        )
        assert await c.store.update_proposal(crashed, expected_version=proposal.version)
    deployment.clock.advance(minutes=1)  # past the resume grace
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"Authorization": f"Bearer {tokens['vic']}"}
            for _ in range(100):
                r = await client.get(url + f"/api/v1/proposals/{proposal.id}", headers=headers)
                if r.json()["proposal"]["status"] == "executed":
                    break
                await asyncio.sleep(0.05)
            assert r.json()["proposal"]["status"] == "executed"
    assert _executions(deployment) == [("quarantine_file", BEACON)]
