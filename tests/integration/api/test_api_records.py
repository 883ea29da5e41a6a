"""Records over real HTTP: incidents with their timeline, decisions, actions and rollback, audit."""

from __future__ import annotations

from tests.integration.api.conftest import BEACON, Api


async def _execute_quarantine(api: Api) -> str:
    proposal = await api.proposal("quarantine_file")
    r = await api.post(f"/api/v1/proposals/{proposal.id}/approve", "alice")
    assert r.status_code == 200
    return proposal.request.id


async def test_incident_detail_has_alerts_decision_proposals_and_a_timeline(api: Api) -> None:
    await _execute_quarantine(api)
    listed = (await api.get("/api/v1/incidents")).json()["items"]
    assert len(listed) == 1
    incident_id = listed[0]["id"]
    d = (await api.get(f"/api/v1/incidents/{incident_id}")).json()
    assert d["incident"]["severity"] == "high"
    assert len(d["alerts"]) == 1 and "original" not in d["alerts"][0]
    assert d["latest_decision"]["playbook"] == "endpoint-malware"
    assert {p["request"]["action"] for p in d["proposals"]} == {"isolate_host", "quarantine_file"}
    assert [a["status"] for a in d["actions"]] == ["executed"]
    steps = [(e["action"], e["actor"]) for e in d["timeline"]]
    assert steps[0] == ("alert.correlate", "soc-agent")
    assert ("decision.make", "soc-agent") in steps
    assert ("proposal.approve", "token:alice") in steps
    assert steps.index(("proposal.approve", "token:alice")) < steps.index(
        ("action.execute", "soc-agent")
    )
    seqs = [e["seq"] for e in d["timeline"]]
    assert seqs == sorted(seqs)
    alerts = (await api.get(f"/api/v1/incidents/{incident_id}/alerts")).json()["items"]
    assert alerts[0]["original"]  # the untouched source document is there on request
    one = await api.get(f"/api/v1/alerts/{alerts[0]['id']}")
    assert one.json()["id"] == alerts[0]["id"]


async def test_decisions_carry_score_breakdown_and_dispositions(api: Api) -> None:
    page = (await api.get("/api/v1/decisions")).json()
    (decision,) = page["items"]
    assert decision["score"] == 90
    assert {b["rule"]: b["points"] for b in decision["breakdown"]} == {
        "base": 40,
        "hash-malicious": 50,
    }
    assert {a["disposition"] for a in decision["actions"]} == {"proposed"}
    same = (await api.get(f"/api/v1/decisions/{decision['id']}")).json()
    assert same["breakdown"] == decision["breakdown"]
    inv = (await api.get(f"/api/v1/investigations/{decision['investigation_id']}")).json()
    assert [e["step"] for e in inv["evidence"]] == ["host_asset", "hash_intel"]


async def test_rollback_of_an_executed_action_by_role(api: Api) -> None:
    action_id = await _execute_quarantine(api)
    listed = (await api.get("/api/v1/actions", params={"status": "executed"})).json()["items"]
    assert [(a["id"], a["action"], a["reversible"]) for a in listed] == [
        (action_id, "quarantine_file", True)
    ]
    assert (await api.post(f"/api/v1/actions/{action_id}/rollback", "vic")).status_code == 403
    r = await api.post(
        f"/api/v1/actions/{action_id}/rollback", "amy", json={"comment": "false positive"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["action"]["status"] == "rolled_back"
    assert api.deployment.journal_actions()[-1] == ("release_file", BEACON)
    again = await api.post(f"/api/v1/actions/{action_id}/rollback", "amy")
    assert again.status_code == 409
    assert "nothing to roll back" in again.json()["detail"]
    (event,) = await api.audit(action="action.rollback")
    assert (event["actor"], event["reason"], event["outcome"]) == (
        "token:amy",
        "false positive",
        "rolled_back",
    )
    by_status = await api.get("/api/v1/actions", params={"status": "rolled_back"})
    assert [a["id"] for a in by_status.json()["items"]] == [action_id]
    assert (await api.get("/api/v1/actions", params={"status": "nope"})).status_code == 422


async def test_rolling_back_a_high_risk_action_needs_a_senior(api: Api) -> None:
    proposal = await api.proposal("isolate_host")
    for who in ("sam", "sue"):
        assert (await api.post(f"/api/v1/proposals/{proposal.id}/approve", who)).status_code == 200
    path = f"/api/v1/actions/{proposal.request.id}/rollback"
    assert (await api.post(path, "alice")).status_code == 403
    assert (await api.post(path, "sam")).status_code == 200
    assert api.deployment.journal_actions()[-1] == ("release_host", "ws-eng-007")


async def test_audit_is_newest_first_filterable_and_verifiable(api: Api) -> None:
    await _execute_quarantine(api)
    events = await api.audit()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs, reverse=True)
    proposals = await api.audit(action="proposal.")
    assert {e["action"] for e in proposals} == {"proposal.create", "proposal.approve"}
    page = (await api.get("/api/v1/audit", params={"limit": 2, "offset": 1})).json()
    assert [e["seq"] for e in page["items"]] == seqs[1:3]
    verify = (await api.get("/api/v1/audit/verify")).json()
    assert verify["ok"] is True and verify["count"] == len(events) and verify["keyed"] is True
    full = (await api.get("/api/v1/audit/verify", params={"full": "true"})).json()
    assert (full["ok"], full["count"], full["full_verified_seconds_ago"]) == (True, len(events), 0)
