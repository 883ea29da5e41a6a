"""Every endpoint, every role: 401 without a valid token, 403 for a role that may not, 404."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from soc_agent.api.credentials import TokenError, revoke_token
from soc_agent.api.credentials.tokens_sqlite import SQLiteTokenStore
from soc_agent.models import Role
from tests.integration.api.conftest import Api

# (method, path template, json body); {p} proposal, {i} incident, {a} alert,
# {v} investigation, {d} decision, {x} action: filled from the seeded store.
READS = [
    "/api/v1/me",
    "/api/v1/proposals",
    "/api/v1/proposals/{p}",
    "/api/v1/incidents",
    "/api/v1/incidents/{i}",
    "/api/v1/incidents/{i}/alerts",
    "/api/v1/alerts/{a}",
    "/api/v1/investigations/{v}",
    "/api/v1/decisions",
    "/api/v1/decisions/{d}",
    "/api/v1/actions",
    "/api/v1/audit",
    "/api/v1/audit/verify",
    "/api/v1/kill-switch",
    "/api/v1/agent/autonomy",
    "/api/v1/agent/action-autonomy",
]
WRITES = [
    ("POST", "/api/v1/proposals/{p}/approve", {"comment": "x"}),
    ("POST", "/api/v1/proposals/{p}/reject", None),
    ("POST", "/api/v1/actions/{x}/rollback", None),
    ("PUT", "/api/v1/kill-switch", {"on": True}),
    ("PUT", "/api/v1/agent/autonomy", {"level": 1}),
    ("PUT", "/api/v1/agent/action-autonomy", {"action": "block_ip", "level": 1}),
]


async def _ids(api: Api) -> dict[str, str]:
    proposal = await api.proposal("quarantine_file")
    detail = (await api.get(f"/api/v1/proposals/{proposal.id}")).json()
    return {
        "p": proposal.id,
        "i": proposal.incident_id,
        "a": detail["alerts"][0]["id"],
        "v": detail["investigation"]["id"],
        "d": proposal.decision_id,
        "x": proposal.request.id,
    }


async def _request(api: Api, method: str, path: str, who: str | None, body: object) -> int:
    headers = api.auth(who) if who else {}
    r = await api.client.request(method, api.url + path, headers=headers, json=body)
    return r.status_code


async def test_every_endpoint_refuses_a_missing_malformed_or_unknown_token(api: Api) -> None:
    ids = await _ids(api)
    calls = [("GET", p, None) for p in READS] + WRITES
    for method, template, body in calls:
        path = template.format(**ids)
        for headers in (
            {},
            {"Authorization": "Basic dmljOnNlY3JldA=="},
            {"Authorization": "Bearer soc_not-a-real-token"},
            {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"},  # a JWT, OIDC not set up
        ):
            r = await api.client.request(method, api.url + path, headers=headers, json=body)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    assert api.deployment.journal() == []


async def test_a_viewer_reads_everything_and_changes_nothing(api: Api) -> None:
    ids = await _ids(api)
    for template in READS:
        r = await api.get(template.format(**ids), who="vic")
        assert r.status_code == 200, (template, r.text)
    before = (await api.get("/api/v1/audit/verify")).json()["count"]
    for method, template, body in WRITES:
        assert await _request(api, method, template.format(**ids), "vic", body) == 403, template
    assert (await api.get("/api/v1/audit/verify")).json()["count"] == before
    assert (await api.get(f"/api/v1/proposals/{ids['p']}")).json()["proposal"]["status"] == (
        "pending"
    )
    assert (await api.get("/api/v1/kill-switch")).json()["active"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/proposals/prop-nope",
        "/api/v1/incidents/inc-nope",
        "/api/v1/incidents/inc-nope/alerts",
        "/api/v1/alerts/nope",
        "/api/v1/investigations/inv-nope",
        "/api/v1/decisions/dec-nope",
        "/api/v1/actions/act-nope",
    ],
)
async def test_unknown_objects_are_404(api: Api, path: str) -> None:
    r = await api.get(path)
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


async def test_deciding_or_rolling_back_unknown_objects_is_404(api: Api) -> None:
    for path in (
        "/api/v1/proposals/prop-nope/approve",
        "/api/v1/proposals/prop-nope/reject",
        "/api/v1/actions/act-nope/rollback",
    ):
        assert (await api.post(path, "ada")).status_code == 404


async def test_revoked_token_is_refused_and_only_hashes_are_stored(api: Api) -> None:
    assert (await api.get("/api/v1/me", who="alice")).json() == {
        "name": "alice",
        "identity": "token:alice",
        "role": "analyst",
        "source": "token",
        "may_approve": ["low", "medium"],
    }
    await revoke_token(api.settings, "alice", actor="ops")
    assert (await api.get("/api/v1/me", who="alice")).status_code == 401
    db = sqlite3.connect(api.settings.store)
    rows = dict(db.execute("SELECT name, token_hash FROM api_tokens").fetchall())
    db.close()
    for name, secret in api.tokens.items():
        assert rows[name] == hashlib.sha256(secret.encode()).hexdigest()
    raw = b"".join(
        p.read_bytes() for p in api.settings.store.parent.iterdir() if p.name.startswith("soc")
    )
    assert not any(secret.encode() in raw for secret in api.tokens.values())
    revoke = await api.audit(action="api.token_revoke")
    assert [(e["actor"], e["subject"]) for e in revoke] == [("ops", "alice")]


async def test_a_name_cannot_hold_two_active_tokens(api: Api) -> None:
    store = SQLiteTokenStore(api.settings.store)
    try:
        with pytest.raises(TokenError, match="active token named 'sam'"):
            await store.create("sam", Role.SENIOR, api.deployment.clock.now)
        with pytest.raises(TokenError, match="invalid token name"):
            await store.create("bad name!", Role.VIEWER, api.deployment.clock.now)
    finally:
        store.close()


async def test_kill_switch_roles_and_audit(api: Api) -> None:
    assert (await api.put("/api/v1/kill-switch", "vic", {"on": True})).status_code == 403
    on = await api.put("/api/v1/kill-switch", "alice", {"on": True})
    assert on.status_code == 200
    assert on.json() == {"active": True, "runtime": True, "configured": False}
    assert (await api.get("/api/v1/kill-switch")).json()["active"] is True
    refused = await api.put("/api/v1/kill-switch", "alice", {"on": False})
    assert refused.status_code == 403
    assert "senior" in refused.json()["detail"]
    off = await api.put("/api/v1/kill-switch", "sam", {"on": False})
    assert off.json()["active"] is False
    trail = await api.audit(action="control.kill_switch")
    assert [(e["actor"], e["outcome"]) for e in trail] == [
        ("token:sam", "off"),
        ("token:alice", "on"),
    ]
    bad = await api.put("/api/v1/kill-switch", "sam", {"on": "maybe"})
    assert bad.status_code == 422


async def test_autonomy_is_admin_only_lowers_only_and_is_audited(api: Api) -> None:
    state = (await api.get("/api/v1/agent/autonomy")).json()
    assert (state["configured"], state["override"], state["effective"]) == (2, None, 2)
    for who in ("alice", "sam"):
        r = await api.put("/api/v1/agent/autonomy", who, {"level": 1})
        assert r.status_code == 403
        assert "admin" in r.json()["detail"]
    lowered = await api.put("/api/v1/agent/autonomy", "ada", {"level": 1, "reason": "incident"})
    assert lowered.status_code == 200
    assert (lowered.json()["override"], lowered.json()["effective"]) == (1, 1)
    # A runtime level cannot raise the agent above its configured autonomy.
    raised = await api.put("/api/v1/agent/autonomy", "ada", {"level": 5})
    assert (raised.json()["override"], raised.json()["effective"]) == (5, 2)
    restored = await api.put("/api/v1/agent/autonomy", "ada", {"level": None})
    assert (restored.json()["override"], restored.json()["effective"]) == (None, 2)
    assert (await api.put("/api/v1/agent/autonomy", "ada", {"level": 9})).status_code == 422
    trail = await api.audit(action="control.autonomy")
    assert [(e["actor"], e["details"]["requested"]) for e in trail] == [
        ("token:ada", None),
        ("token:ada", 5),
        ("token:ada", 1),
    ]
    assert trail[-1]["reason"] == "incident"


async def test_action_autonomy_caps_are_admin_only_lower_only_and_audited(api: Api) -> None:
    """Applying `policy suggest` through the API: a runtime cap per action, audited."""
    path = "/api/v1/agent/action-autonomy"
    state = (await api.get(path)).json()
    assert (state["override"], state["effective"]) == ({}, state["configured"])
    refused = await api.put(path, "sam", {"action": "quarantine_file", "level": 1})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    body = {"action": "quarantine_file", "level": 1, "reason": "policy suggest: 0.44"}
    capped = await api.put(path, "ada", body)
    assert capped.status_code == 200, capped.text
    assert capped.json()["effective"]["quarantine_file"] == 1
    # The cap is in force for every process: each decision reads it from the store.
    async with api.deployment.open(api.settings) as c:
        policy = await c.agent.effective_policy()
    assert policy.action_autonomy["quarantine_file"] == 1
    # Above the configuration a cap changes nothing: only a config change raises autonomy.
    high = await api.put(path, "ada", {"action": "quarantine_file", "level": 5})
    assert high.json()["effective"] == state["configured"]
    lifted = await api.put(path, "ada", {"action": "quarantine_file", "level": None})
    assert lifted.json()["override"] == {}
    bad = await api.put(path, "ada", {"action": "not an action!", "level": 1})
    assert bad.status_code == 422
    trail = await api.audit(action="control.action_autonomy")
    assert [(e["subject"], e["details"]["requested"]) for e in trail] == [
        ("action:quarantine_file", None),
        ("action:quarantine_file", 5),
        ("action:quarantine_file", 1),
    ]
    assert trail[-1]["reason"] == "policy suggest: 0.44"


async def test_openapi_is_published_with_bearer_auth(api: Api) -> None:
    r = await api.client.get(api.url + "/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    for path in (
        "/api/v1/proposals",
        "/api/v1/proposals/{proposal_id}",
        "/api/v1/proposals/{proposal_id}/approve",
        "/api/v1/proposals/{proposal_id}/reject",
        "/api/v1/actions/{action_id}/rollback",
        "/api/v1/kill-switch",
        "/api/v1/agent/autonomy",
        "/api/v1/agent/action-autonomy",
    ):
        assert path in spec["paths"], path
    schemes = spec["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert "/login" not in spec["paths"]
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


async def test_the_agent_identity_cannot_approve_its_own_proposals(api: Api) -> None:
    store = SQLiteTokenStore(api.settings.store)
    try:
        secret = await store.create(api.settings.agent_id, Role.ADMIN, api.deployment.clock.now)
    finally:
        store.close()
    proposal = await api.proposal("quarantine_file")
    r = await api.client.post(
        f"{api.url}/api/v1/proposals/{proposal.id}/approve",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 403
    assert "agent's own identity" in r.json()["detail"]
    assert api.deployment.journal() == []
