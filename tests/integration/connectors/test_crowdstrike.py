"""CrowdStrike Falcon over real HTTP: OAuth2 tokens, host lookup, containment and its lift,
verification, Falcon's errors and rate limit, and the executor taking effect once."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from soc_agent_connectors.crowdstrike import CrowdStrike, CrowdStrikeConfig

from soc_agent.actions.executor import Executor
from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError
from soc_agent.gateway import Gateway
from soc_agent.models import (
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
)
from soc_agent.models.ids import idempotency_key
from soc_agent.store import SQLiteStore
from tests.conftest import Clock
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.oauth_vendor import TokenEndpoint, form_of
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "crowdstrike"
CLIENT_ID = "7f3e2d1c0b9a48e7a6f5d4c3b2a19080"
CLIENT_SECRET = "Zq8xV2mN5pL7kR3tW9yB4cF6hJ1gD0sA2eU8iO5u"
DEVICE = "5f4e1c7d2b9a4e3f8c6d1a2b3c4d5e6f"
HOST = "ws-fin-042"
TOKEN = "/oauth2/token"
QUERY = "/devices/queries/devices/v1"
ENTITIES = "/devices/entities/devices/v2"
ACTIONS = "/devices/entities/devices-actions/v2"
Make = Callable[..., CrowdStrike]


def fx(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def device(status: str = "normal", **changes: Any) -> dict[str, Any]:
    body = fx("devices_entities")
    body["resources"][0].update(status=status, **changes)
    return body  # type: ignore[no-any-return]


@pytest.fixture
def tokens() -> TokenEndpoint:
    return TokenEndpoint(
        fx("token"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refused=Reply(401, fx("token_invalid_client")),
        status=201,  # Falcon answers the token request with 201 Created
    )


@pytest.fixture
async def make(
    vendor_server: VendorServer,
    fake_time: FakeTime,
    tokens: TokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Make]:
    monkeypatch.setenv("FALCON_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("FALCON_CLIENT_SECRET", CLIENT_SECRET)
    vendor_server.route("POST", TOKEN, tokens)
    built: list[CrowdStrike] = []

    def build(**config: Any) -> CrowdStrike:
        config.setdefault("base_url", vendor_server.url)
        config.setdefault("client_id", "env:FALCON_CLIENT_ID")
        config.setdefault("client_secret", "env:FALCON_CLIENT_SECRET")
        conn = CrowdStrike(CrowdStrikeConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def serve_host(
    vendor_server: VendorServer, tokens: TokenEndpoint, status: str = "normal"
) -> dict[str, str]:
    """Falcon with one device whose status follows the containment actions it receives."""
    state = {"status": status}

    def entities(request: RecordedRequest) -> Reply:
        assert request.query["ids"] == [DEVICE]
        return Reply(200, device(state["status"]))

    def act(request: RecordedRequest) -> Reply:
        name = request.query["action_name"][0]
        state["status"] = {"contain": "containment_pending"}.get(name, "lift_containment_pending")
        return Reply(202, fx("devices_actions"))

    unauthorized = Reply(401, fx("error_401"))
    vendor_server.route("GET", QUERY, tokens.guard(Reply(200, fx("devices_query")), unauthorized))
    vendor_server.route("GET", ENTITIES, tokens.guard(entities, unauthorized))
    vendor_server.route("POST", ACTIONS, tokens.guard(act, unauthorized))
    return state


def api_calls(vendor_server: VendorServer) -> list[RecordedRequest]:
    return [r for r in vendor_server.requests if r.path != TOKEN]


# --- OAuth2 ---------------------------------------------------------------------------------


async def test_token_is_fetched_with_client_credentials_and_reused(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    conn = make()
    for _ in range(3):
        await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    (token_request,) = vendor_server.calls("POST", TOKEN)
    assert form_of(token_request) == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert token_request.header("content-type") == "application/x-www-form-urlencoded"
    assert token_request.header("authorization") is None
    assert len(api_calls(vendor_server)) == 6
    assert {r.header("authorization") for r in api_calls(vendor_server)} == {
        f"Bearer {tokens.issued[0]}"
    }


async def test_concurrent_calls_share_one_token_request(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    # a slow token endpoint: every call below arrives while the first fetch is in flight
    vendor_server.route("POST", TOKEN, lambda r: dataclasses.replace(tokens(r), delay=0.2))
    conn = make()
    await asyncio.gather(
        *(conn.invoke("check_state", {"action": "isolate_host", "target": HOST}) for _ in range(5))
    )
    assert len(vendor_server.calls("POST", TOKEN)) == 1
    assert len(api_calls(vendor_server)) == 10


async def test_token_is_renewed_shortly_before_it_expires(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_host(vendor_server, tokens)
    conn = make()  # expires_in 1799, renewed 60 s early
    await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    fake_time.advance(1738)
    await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    assert len(tokens.issued) == 1
    fake_time.advance(2)
    await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    assert len(tokens.issued) == 2
    assert api_calls(vendor_server)[-1].header("authorization") == f"Bearer {tokens.issued[1]}"


async def test_a_revoked_token_is_replaced_once_on_401(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    conn = make()
    await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    tokens.revoke()
    out = await conn.invoke("check_state", {"action": "isolate_host", "target": HOST})
    assert out["state"] == "normal"
    assert len(tokens.issued) == 2
    rejected, retried = vendor_server.calls("GET", QUERY)[1:]
    assert rejected.header("authorization") == f"Bearer {tokens.issued[0]}"
    assert retried.header("authorization") == f"Bearer {tokens.issued[1]}"


async def test_a_401_that_survives_a_new_token_fails_without_looping(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    vendor_server.route("GET", QUERY, Reply(401, fx("error_401")))
    with pytest.raises(ConnectorError, match=r"HTTP 401: access denied, invalid bearer token"):
        await make().invoke("get_host", {"host": HOST})
    assert len(tokens.issued) == 2
    assert len(vendor_server.calls("GET", QUERY)) == 2


async def test_a_refused_client_fails_naming_the_token_endpoint(
    make: Make, vendor_server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FALCON_CLIENT_SECRET", "Wr0ngSecretWr0ngSecretWr0ngSecret")
    with pytest.raises(ConnectorError) as err:
        await make().invoke("get_host", {"host": HOST})
    assert "POST /oauth2/token: HTTP 401" in str(err.value)
    assert "access denied, invalid client" in str(err.value)
    assert "Wr0ngSecret" not in str(err.value)
    assert len(vendor_server.calls("POST", TOKEN)) == 1  # a refused client is not retried
    assert api_calls(vendor_server) == []


def test_config_takes_client_credentials_from_references() -> None:
    with pytest.raises(ValidationError, match="allow_literal_credentials"):
        CrowdStrikeConfig(client_id="x", client_secret=CLIENT_SECRET)
    cfg = CrowdStrikeConfig(client_id=CLIENT_ID, client_secret="env:FALCON_CLIENT_SECRET")
    assert cfg.credentials == cfg.client_secret  # rotated and scrubbed like any credential
    assert cfg.token_url == "/oauth2/token"
    assert cfg.hosts == {"api.crowdstrike.com"}
    assert CLIENT_SECRET not in repr(cfg) and CLIENT_SECRET not in cfg.model_dump_json()


# --- host lookup ----------------------------------------------------------------------------


async def test_get_host_maps_falcon_fields(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    out = await make().invoke("get_host", {"host": HOST})
    assert out == {
        "host": HOST,
        "found": True,
        "device_id": DEVICE,
        "hostname": "ws-fin-042",
        "platform": "Windows",
        "os_version": "Windows 11",
        "status": "normal",
        "contained": False,
        "last_seen": "2026-11-20T08:55:01Z",
        "local_ip": "10.20.4.42",
        "external_ip": "198.51.100.23",
        "tags": ["FalconGroupingTags/Finance", "SensorGroupingTags/Tier1"],
        "matches": 1,
    }
    query, entities = api_calls(vendor_server)
    assert query.query == {
        "filter": [f"hostname:'{HOST}'"],
        "sort": ["last_seen.desc"],
        "limit": ["10"],
    }
    assert entities.query == {"ids": [DEVICE]}


async def test_get_host_shows_the_newest_of_duplicate_devices(
    make: Make, vendor_server: VendorServer
) -> None:
    old = "0123456789abcdef0123456789abcdef"
    ids = fx("devices_query")
    ids["resources"] = [old, DEVICE]
    body = device("containment_pending")
    stale = copy.deepcopy(body["resources"][0])
    stale.update(device_id=old, last_seen="2025-02-01T10:00:00Z", status="normal")
    body["resources"].insert(0, stale)
    vendor_server.route("GET", QUERY, Reply(200, ids))
    vendor_server.route("GET", ENTITIES, Reply(200, body))
    out = await make().invoke("get_host", {"host": HOST})
    assert (out["device_id"], out["contained"], out["matches"]) == (DEVICE, True, 2)


async def test_an_unknown_hostname_is_not_found(make: Make, vendor_server: VendorServer) -> None:
    empty = fx("devices_query")
    empty["resources"], empty["meta"]["pagination"]["total"] = [], 0
    vendor_server.route("GET", QUERY, Reply(200, empty))
    out = await make().invoke("get_host", {"host": "ws-gone-001"})
    assert out["found"] is False and out["device_id"] is None
    assert vendor_server.calls("GET", ENTITIES) == []


async def test_a_hostname_that_could_inject_fql_is_refused(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="not a hostname"):
        await make().invoke("get_host", {"host": "x' + hostname:'*"})
    with pytest.raises(ConnectorError, match="not a hostname"):
        await make().invoke("isolate_host", {"target": "*"})
    assert vendor_server.requests == []


# --- containment ----------------------------------------------------------------------------


async def test_isolate_host_contains_the_device(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    out = await make().invoke(
        "isolate_host", {"target": HOST, "reason": "score 95", "idempotency_key": "k1"}
    )
    assert out == {
        "action": "isolate_host",
        "target": HOST,
        "vendor_id": DEVICE,
        "state": "containment_pending",
        "changed": True,
        "request_id": None,
    }
    (post,) = vendor_server.calls("POST", ACTIONS)
    assert post.query == {"action_name": ["contain"]}
    assert post.json() == {"ids": [DEVICE]}
    assert post.header("content-type") == "application/json"
    assert post.header("authorization") == f"Bearer {tokens.issued[0]}"


async def test_release_host_lifts_containment(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens, status="contained")
    out = await make().invoke("release_host", {"target": HOST})
    assert (out["state"], out["changed"]) == ("lift_containment_pending", True)
    (post,) = vendor_server.calls("POST", ACTIONS)
    assert post.query == {"action_name": ["lift_containment"]}
    assert post.json() == {"ids": [DEVICE]}
    assert post.header("authorization") == f"Bearer {tokens.issued[0]}"


@pytest.mark.parametrize("status", ["contained", "containment_pending"])
async def test_isolating_a_contained_host_sends_nothing(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, status: str
) -> None:
    serve_host(vendor_server, tokens, status=status)
    out = await make().invoke("isolate_host", {"target": HOST})
    assert (out["state"], out["changed"]) == (status, False)
    assert vendor_server.calls("POST", ACTIONS) == []


async def test_errors_in_a_2xx_answer_fail_the_action(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_host(vendor_server, tokens)
    partial = fx("devices_actions")
    partial["resources"] = []
    partial["errors"] = [{"code": 409, "message": "Device is in reduced functionality mode"}]
    vendor_server.route("POST", ACTIONS, Reply(202, partial))
    with pytest.raises(ConnectorError, match="409 Device is in reduced functionality mode"):
        await make().invoke("isolate_host", {"target": HOST})


@pytest.mark.parametrize(
    ("action", "status", "in_effect"),
    [
        ("isolate_host", "contained", True),
        ("isolate_host", "containment_pending", True),
        ("isolate_host", "normal", False),
        ("isolate_host", "lift_containment_pending", False),
        ("release_host", "normal", True),
        ("release_host", "lift_containment_pending", True),
        ("release_host", "contained", False),
        ("release_host", "containment_pending", False),
    ],
)
async def test_check_state_reads_the_device_status(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    action: str,
    status: str,
    in_effect: bool,
) -> None:
    serve_host(vendor_server, tokens, status=status)
    out = await make().invoke("check_state", {"action": action, "target": HOST})
    assert out == {
        "action": action,
        "target": HOST,
        "in_effect": in_effect,
        "state": status,
        "vendor_id": DEVICE,
    }


async def test_check_state_refuses_what_it_cannot_verify(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="cannot verify unknown action 'block_ip'"):
        await make().invoke("check_state", {"action": "block_ip", "target": HOST})
    assert vendor_server.requests == []


# --- Falcon's errors and limits -------------------------------------------------------------


async def test_403_is_reported_with_falcons_message_and_not_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", QUERY, Reply(403, fx("error_403")))
    with pytest.raises(ConnectorError) as err:
        await make().invoke("get_host", {"host": HOST})
    assert "GET /devices/queries/devices/v1" in str(err.value)
    assert "HTTP 403: access denied, authorization failed" in str(err.value)
    assert len(vendor_server.calls("GET", QUERY)) == 1 and fake_time.sleeps == []


def _rate_limited(fake_time: FakeTime, seconds: int) -> Reply:
    reset = int(fake_time.now().timestamp()) + seconds
    headers = {
        "X-RateLimit-Limit": "6000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-RetryAfter": str(reset),
    }
    return Reply(429, fx("error_429"), headers=headers)


async def test_429_waits_until_x_ratelimit_retryafter(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_host(vendor_server, tokens)
    vendor_server.route("GET", QUERY, _rate_limited(fake_time, 7), Reply(200, fx("devices_query")))
    out = await make().invoke("get_host", {"host": HOST})
    assert out["found"] is True
    assert fake_time.sleeps == [7.0]
    assert len(vendor_server.calls("GET", QUERY)) == 2


async def test_429_on_containment_is_retried_after_the_reset(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_host(vendor_server, tokens)
    vendor_server.route(
        "POST", ACTIONS, _rate_limited(fake_time, 3), Reply(202, fx("devices_actions"))
    )
    out = await make().invoke("isolate_host", {"target": HOST})
    assert out["changed"] is True
    assert fake_time.sleeps == [3.0]
    assert [r.json() for r in vendor_server.calls("POST", ACTIONS)] == [{"ids": [DEVICE]}] * 2


async def test_429_with_a_distant_reset_fails_fast(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", QUERY, _rate_limited(fake_time, 600))
    with pytest.raises(ConnectorError, match=r"HTTP 429: API rate limit exceeded\..*600s away"):
        await make().invoke("get_host", {"host": HOST})
    assert fake_time.sleeps == [] and len(vendor_server.calls("GET", QUERY)) == 1


async def test_5xx_is_retried_with_backoff_then_reported(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", QUERY, Reply(500, fx("error_500")))
    with pytest.raises(ConnectorError, match=r"HTTP 500: internal error \(after 3 attempts\)"):
        await make().invoke("get_host", {"host": HOST})
    assert fake_time.sleeps == [0.5, 1.0]


async def test_a_slow_falcon_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", QUERY, Reply(200, fx("devices_query"), delay=0.6))
    with pytest.raises(ConnectorError, match=r"timed out after 0\.2s"):
        await make(timeout_seconds=0.2, max_retries=0).invoke("get_host", {"host": HOST})


async def test_secrets_and_tokens_never_reach_errors_logs_or_audit(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve_host(vendor_server, tokens)
    conn = make(max_retries=0)
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    gateway = Gateway(
        {"crowdstrike": conn},
        {"crowdstrike": ["edr:read", "host:contain"]},
        audit,
        audit_queries=True,
    )

    def echo(request: RecordedRequest) -> Reply:
        # a careless gateway echoing the bearer token back in its error message
        sent = request.header("authorization")
        return Reply(403, {"errors": [{"code": 403, "message": f"token {sent} lacks Hosts:write"}]})

    vendor_server.route("POST", ACTIONS, echo)
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        await gateway.call("crowdstrike", "get_host", {"host": HOST})
        tokens.revoke()  # forces a second token through the 401 path
        for capability, args in [
            ("check_state", {"action": "isolate_host", "target": HOST}),
            ("isolate_host", {"target": HOST, "reason": "test"}),
        ]:
            try:
                await gateway.call("crowdstrike", capability, args)
            except ConnectorError as exc:
                errors.append(str(exc))
    try:
        entries = "\n".join(e.model_dump_json() for e in await audit.list(limit=100))
    finally:
        audit.close()
    assert len(tokens.issued) == 2
    assert len(errors) == 1 and "token Bearer [REDACTED] lacks Hosts:write" in errors[0]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for value in (CLIENT_SECRET, *tokens.issued):
        for where, text in {"errors": "\n".join(errors), "audit": entries, "logs": logs}.items():
            assert value not in text, f"a credential reached the {where}"


# --- the executor over Falcon ---------------------------------------------------------------


def _containment_request() -> ActionRequest:
    entity = Entity(type=EntityType.HOST, value=HOST)
    key = idempotency_key("inc-1", "isolate_host", entity)
    return ActionRequest(
        id=f"act-{key[:16]}",
        action="isolate_host",
        target=entity,
        connector="crowdstrike",
        capability="isolate_host",
        playbook_rule="isolate-host",
        disposition=Disposition.EXECUTED,
        rule="threshold.execute",
        reason="score 95 >= execute_at 90",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=True,
        rollback_capability="release_host",
        risk=RiskTier.HIGH,
        idempotency_key=key,
    )


async def test_executor_contains_once_and_lifts_once(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    store: SQLiteStore,
    audit: SQLiteAuditLog,
    clock: Clock,
) -> None:
    state = serve_host(vendor_server, tokens)
    gateway = Gateway(
        {"crowdstrike": make()},
        {"crowdstrike": ["edr:read", "host:contain"]},
        audit,
        clock=clock,
    )
    executor = Executor(store, gateway, audit, actor="soc-agent", clock=clock)
    request = _containment_request()

    first = await executor.execute(request, "inc-1")
    again = await executor.execute(request, "inc-1")
    assert (first.status, first.performed, first.verified) == ("executed", True, True)
    assert (again.status, again.performed) == ("already_executed", False)
    assert state["status"] == "containment_pending"

    undone = await executor.rollback(request.id, actor="alice", reason="false positive")
    undone_again = await executor.rollback(request.id, actor="alice", reason="again")
    assert (undone.status, undone.performed) == ("rolled_back", True)
    assert not undone_again.performed

    posts = vendor_server.calls("POST", ACTIONS)
    assert [p.query["action_name"] for p in posts] == [["contain"], ["lift_containment"]]
    assert all(p.json() == {"ids": [DEVICE]} for p in posts)
    assert len(tokens.issued) == 1
    record = await store.get_action(request.idempotency_key)
    assert record is not None and record.status == "rolled_back"
    assert (await audit.verify()).ok


async def test_executor_resolves_a_crashed_claim_from_the_device_status(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    store: SQLiteStore,
    audit: SQLiteAuditLog,
    clock: Clock,
) -> None:
    """Crashed after Falcon accepted the containment, before the ledger was updated."""
    state = serve_host(vendor_server, tokens, status="containment_pending")
    gateway = Gateway(
        {"crowdstrike": make()}, {"crowdstrike": ["edr:read", "host:contain"]}, audit, clock=clock
    )
    executor = Executor(store, gateway, audit, actor="soc-agent", clock=clock)
    request = _containment_request()
    await store.claim_action(request, "inc-1", clock())
    clock.advance(minutes=10)  # the claim is stale: its worker is gone
    outcome = await executor.execute(request, "inc-1")
    assert (outcome.status, outcome.performed, outcome.verified) == (
        "already_executed",
        False,
        True,
    )
    assert vendor_server.calls("POST", ACTIONS) == []
    assert state["status"] == "containment_pending"
