"""Closing an incident with a verdict over real HTTP: roles, errors, audit, the record."""

from __future__ import annotations

from tests.integration.api.conftest import Api


async def _incident(api: Api) -> str:
    listed = (await api.get("/api/v1/incidents")).json()["items"]
    return str(listed[0]["id"])


async def test_an_analyst_closes_an_incident_and_the_verdict_is_kept_and_audited(
    api: Api,
) -> None:
    incident_id = await _incident(api)
    body = {"verdict": "false_positive", "reason": "the nightly build script"}
    r = await api.post(f"/api/v1/incidents/{incident_id}/close", "alice", json=body)
    assert r.status_code == 200, r.text
    record = r.json()["verdict"]
    assert (record["verdict"], record["closed_by"]["name"]) == ("false_positive", "token:alice")
    assert record["rules"] and any(k.startswith("host:") for k in record["entities"])
    detail = (await api.get(f"/api/v1/incidents/{incident_id}")).json()
    assert detail["verdict"]["id"] == record["id"]
    closing = [e for e in detail["timeline"] if e["action"] == "incident.close"]
    assert [(e["actor"], e["outcome"]) for e in closing] == [("token:alice", "false_positive")]

    again = {"verdict": "true_positive", "reason": "the build server was the way in"}
    r = await api.post(f"/api/v1/incidents/{incident_id}/close", "alice", json=again)
    assert r.status_code == 200
    detail = (await api.get(f"/api/v1/incidents/{incident_id}")).json()
    assert detail["verdict"]["verdict"] == "true_positive"  # the latest closing counts


async def test_closing_is_refused_to_viewers_unknown_incidents_and_empty_reasons(
    api: Api,
) -> None:
    incident_id = await _incident(api)
    body = {"verdict": "false_positive", "reason": "looks fine"}
    viewer = await api.post(f"/api/v1/incidents/{incident_id}/close", "vic", json=body)
    assert viewer.status_code == 403
    missing = await api.post("/api/v1/incidents/inc-nope/close", "alice", json=body)
    assert missing.status_code == 404
    blank = {"verdict": "false_positive", "reason": "   "}
    empty = await api.post(f"/api/v1/incidents/{incident_id}/close", "alice", json=blank)
    assert empty.status_code == 400 and "reason" in empty.text
    odd = {"verdict": "maybe", "reason": "unsure"}
    assert (
        await api.post(f"/api/v1/incidents/{incident_id}/close", "alice", json=odd)
    ).status_code == 422
    anonymous = await api.post(f"/api/v1/incidents/{incident_id}/close", None, json=body)
    assert anonymous.status_code == 401
    assert (await api.get(f"/api/v1/incidents/{incident_id}")).json()["verdict"] is None
